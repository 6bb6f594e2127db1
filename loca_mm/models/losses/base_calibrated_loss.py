"""What the LoCa losses share: argument checks, the calibration statistics
kept on the device, the weight."""
import warnings
from typing import Optional

import torch
from torch import Tensor, nn

from loca_mm.functional import (CALIBRATION_MODES, DistillLoss,
                                calibration_counts)
from .validation import check_choice, check_flag, check_integer, check_real


class _CalibrationSums:
    """The calibration counts of one logging window, on one device.

    ``totals`` holds what :func:`loca_mm.functional.calibration_counts`
    sums (valid samples, calibrated samples, sum of ``s`` over the
    calibrated ones); compiled calls and calls that may ignore samples add
    there. An eager call without ignored samples adds in two operator calls
    and keeps nothing of its result: every sample is valid and ``s`` is
    exactly 1 where it was not calibrated, so adding ``s`` into two bins by
    the calibrated mask sums the number of uncalibrated samples and the
    ``s`` of the calibrated ones, and the number of samples is known on the
    host. (Keeping the details of many calls for one sum cost several
    times as much at small batches: the sum's inputs and the tensors it
    frees are cold by then.) A plain object with slots, not the module:
    ``nn.Module`` sets attributes through Python.
    """
    __slots__ = ('totals', 'bins', 'samples')

    def __init__(self) -> None:
        self.totals = torch.zeros(3)
        self.bins = torch.zeros(2)
        self.samples = 0

    def add_binned(self, result: DistillLoss) -> None:
        """Add the counts of a result whose samples are all valid."""
        scale = result.scale.detach()
        if scale.dtype != torch.float32:  # float64 logits give float64 s
            scale = scale.float()
        self.bins.scatter_add_(0, result.calibrated.long(), scale)
        self.samples += result.valid.numel()

    def take(self) -> Tensor:
        """The counts so far as ``totals`` holds them; all restart at zero,
        in place (a compiled caller keeps seeing the same tensors)."""
        totals = self.totals.clone()
        uncalibrated, calibrated_scale = self.bins
        # Python numbers and device tensors: nothing is read back.
        totals[0] += self.samples
        totals[1] += self.samples - uncalibrated
        totals[2] += calibrated_scale
        self.totals.zero_()
        self.bins.zero_()
        self.samples = 0
        return totals

    def to(self, device: torch.device) -> None:
        """Move the sums to ``device``, keeping them (and float32)."""
        self.totals = self.totals.to(device)
        self.bins = self.bins.to(device)


class BaseCalibratedLoss(nn.Module):
    """Base of the registered LoCa losses (thin adapters of the functional
    core).

    In training mode (with ``log_stats`` and calibration on) every call adds
    its :func:`loca_mm.functional.calibration_counts` to float32 sums on
    the loss's device (not buffers: no checkpoint and no DDP buffer
    broadcast touches them); nothing is read back to the host. In eager
    mode without ``ignore_index`` a call costs two operator calls and keeps
    nothing of its result; compiled, each call adds its counts in its
    graph. :class:`loca_mm.engine.hooks.LoCaLossHook` takes the totals
    when mmengine logs and publishes ``train/loca_ratio`` and
    ``train/loca_scale``; outside mmengine, :meth:`take_calibration_totals`
    returns them for :func:`loca_mm.functional.calibration_summary`.

    Args:
        tau (float): temperature, > 0.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
        loss_weight (float): weight of the loss, >= 0.
        ignore_index (int, optional): label left out of the batch mean.
        check_labels (bool): check that labels lie in [0, C).
        log_stats (bool): accumulate ``loca_ratio``/``loca_scale`` during
            training.
    """

    def __init__(self, tau: float, calibrate: str, loss_weight: float,
                 ignore_index: Optional[int], check_labels: bool,
                 log_stats: bool) -> None:
        super().__init__()
        owner = type(self).__name__
        self.tau = check_real(owner, 'tau', tau, greater_than=0.0)
        self.calibrate = check_choice(owner, 'calibrate', calibrate,
                                      CALIBRATION_MODES)
        self.loss_weight = check_real(
            owner, 'loss_weight', loss_weight, at_least=0.0)
        self.ignore_index = check_integer(
            owner, 'ignore_index', ignore_index, optional=True)
        self.check_labels = check_flag(owner, 'check_labels', check_labels)
        self.log_stats = check_flag(owner, 'log_stats', log_stats)
        # Statistics of a logging window, not state of the model: no
        # buffer, so neither checkpoints nor DDP see them (a DDP wrapper
        # with broadcast_buffers=True would overwrite every process's
        # counts with rank 0's before each forward). _apply moves them
        # with the module.
        self._sums = _CalibrationSums()
        # Set by LoCaLossHook before training (see attach_runner).
        self.stats_collected = False
        self.train_loop_by_epoch: Optional[bool] = None

    def _apply(self, fn, recurse: bool = True):
        # Follow the module's device (.to(), .cuda()); stay float32 and
        # keep the counts (a .half() cast would round them).
        self._sums.to(fn(self._sums.totals[:0]).device)
        return super()._apply(fn, recurse)

    @property
    def calibration_totals(self) -> Tensor:
        """The float32 (3,) counts that compiled calls add to (eager calls
        without ``ignore_index`` add elsewhere until
        :meth:`take_calibration_totals`); on the loss's device."""
        return self._sums.totals

    @property
    def collects_stats(self) -> bool:
        """Whether training calls accumulate calibration statistics."""
        return self.log_stats and self.calibrate != 'none'

    def attach_runner(self, train_loop_by_epoch: Optional[bool]) -> None:
        """Called by ``LoCaLossHook`` before training.

        Args:
            train_loop_by_epoch (bool, optional): whether the train loop
                counts epochs (False for ``IterBasedTrainLoop``, None if
                the hook does not know the loop).
        """
        self.stats_collected = True
        self.train_loop_by_epoch = train_loop_by_epoch
        self._sums.take()

    def take_calibration_totals(self) -> Tensor:
        """The calibration counts summed since the last call, on the loss's
        device, without reading them back; the sums restart from zero.

        Returns:
            Tensor: float32 (3,): valid samples, calibrated samples, sum of
            ``s`` over the calibrated ones.
        """
        return self._sums.take()

    def weighted(self, result: DistillLoss, factor: float = 1.0) -> Tensor:
        """Accumulate the calibration statistics and weight the loss.

        Args:
            result (DistillLoss): output of a functional loss.
            factor (float): a further weight (DKD's warm-up).

        Returns:
            Tensor: ``factor * loss_weight * result.loss``.
        """
        if self.training and self.collects_stats:
            compiling = torch.compiler.is_compiling()
            if not (compiling or self.stats_collected):
                self._warn_uncollected()
            if compiling or self.ignore_index is not None:
                self._sums.totals.add_(calibration_counts(result))
            else:
                self._sums.add_binned(result)
        weight = factor * self.loss_weight
        # Multiplying by 1 changes nothing but adds an autograd node, a
        # measurable share of the loss's time at small N x C.
        return result.loss if weight == 1.0 else weight * result.loss

    def _warn_uncollected(self) -> None:
        self.stats_collected = True  # once
        warnings.warn(
            f'{type(self).__name__}: no LoCaLossHook collects the '
            'calibration statistics, so train/loca_ratio and '
            'train/loca_scale are not logged. In an mmengine Runner add '
            "custom_hooks=[dict(type='LoCaLossHook')] (loca_mm's "
            'distillation configs have it); elsewhere read them with '
            'calibration_summary(loss.take_calibration_totals()), or pass '
            'log_stats=False.', UserWarning, stacklevel=6)
