"""What the LoCa losses share: argument checks, the calibration statistics
kept on the device, the weight."""
import warnings
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from loca_mm.functional import (CALIBRATION_MODES, DistillLoss,
                                calibration_counts, calibration_counts_of)
from .validation import check_choice, check_flag, check_integer, check_real

# Eager training calls keep their per-sample details (a few (M,) tensors
# each) and sum them in one reduction, when the totals are taken or after
# this many calls: summing each call's counts as it comes would cost several
# operator calls per training step, a measurable share of a loss call at
# small batches.
PENDING_CALLS = 64


class BaseCalibratedLoss(nn.Module):
    """Base of the registered LoCa losses (thin adapters of the functional
    core).

    In training mode (with ``log_stats`` and calibration on) every call adds
    its :func:`loca_mm.functional.calibration_counts` to the float32 tensor
    ``calibration_totals`` on the loss's device (an attribute, not a buffer:
    no checkpoint and no DDP buffer broadcast touches it); nothing is read
    back to the host. In eager mode the additions are batched (at most
    :data:`PENDING_CALLS` calls wait); compiled, each call adds in its
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
        # Statistics of a logging window, not state of the model: a plain
        # attribute, not a buffer, so neither checkpoints nor DDP see it
        # (a DDP wrapper with broadcast_buffers=True would overwrite every
        # process's counts with rank 0's before each forward). _apply moves
        # it with the module.
        self.calibration_totals = torch.zeros(3)
        # (scale, calibrated, valid) of the eager calls not yet summed.
        self._pending: List[Tuple[Tensor, Tensor, Tensor]] = []
        # Set by LoCaLossHook before training (see attach_runner).
        self.stats_collected = False
        self.train_loop_by_epoch: Optional[bool] = None

    def _apply(self, fn, recurse: bool = True):
        # Follow the module's device (.to(), .cuda()); stay float32 and
        # keep the counts (a .half() cast would round them).
        self._sum_pending()
        device = fn(self.calibration_totals[:0]).device
        self.calibration_totals = self.calibration_totals.to(device)
        return super()._apply(fn, recurse)

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
        self.calibration_totals = torch.zeros(
            3, device=self.calibration_totals.device)
        self._pending.clear()

    def take_calibration_totals(self) -> Tensor:
        """The calibration counts summed since the last call, on the loss's
        device, without reading them back; the sums restart from zero.

        Returns:
            Tensor: float32 (3,): valid samples, calibrated samples, sum of
            ``s`` over the calibrated ones.
        """
        self._sum_pending()
        # In place: a compiled caller keeps seeing the same tensor.
        totals = self.calibration_totals.clone()
        self.calibration_totals.zero_()
        return totals

    def weighted(self, result: DistillLoss, factor: float = 1.0) -> Tensor:
        """Accumulate the calibration statistics and weight the loss.

        Args:
            result (DistillLoss): output of a functional loss.
            factor (float): a further weight (DKD's warm-up).

        Returns:
            Tensor: ``factor * loss_weight * result.loss``.
        """
        if self.training and self.collects_stats:
            if torch.compiler.is_compiling():
                self.calibration_totals.add_(calibration_counts(result))
            else:
                if not self.stats_collected:
                    self._warn_uncollected()
                # Not the result itself: its loss may hold the graph. The
                # scale of the fused losses holds no graph either.
                self._pending.append(
                    (result.scale, result.calibrated, result.valid))
                if len(self._pending) >= PENDING_CALLS:
                    self._sum_pending()
        weight = factor * self.loss_weight
        # Multiplying by 1 changes nothing but adds an autograd node, a
        # measurable share of the loss's time at small N x C.
        return result.loss if weight == 1.0 else weight * result.loss

    def _sum_pending(self) -> None:
        """Add the counts of the pending calls to ``calibration_totals``."""
        if self._pending:
            details = [torch.cat(parts) for parts in zip(*self._pending)]
            self._pending.clear()
            self.calibration_totals.add_(calibration_counts_of(*details))

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
