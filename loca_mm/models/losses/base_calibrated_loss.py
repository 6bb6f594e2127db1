"""What the registered LoCa losses share: argument checks, the calibration
statistics, the weight."""
import warnings
from typing import Optional

import torch
from torch import Tensor, nn

from loca_mm.functional import (CALIBRATION_MODES, DistillLoss,
                                calibration_counts)
from .validation import check_choice, check_flag, check_integer, check_real


class BaseCalibratedLoss(nn.Module):
    """Base of the registered LoCa losses (thin adapters of
    :mod:`loca_mm.functional`).

    In training mode (with ``log_stats`` and calibration on) every call adds
    its :func:`loca_mm.functional.calibration_counts` to
    ``calibration_totals``, a float32 (3,) tensor on the loss's device (an
    attribute, not a buffer: neither checkpoints nor DDP's buffer broadcast
    touch it); nothing is read back to the host.
    :class:`loca_mm.engine.hooks.LoCaLossHook` takes the totals when
    mmengine logs and publishes ``train/loca_ratio`` and
    ``train/loca_scale``; elsewhere, :meth:`take_calibration_totals` returns
    them for :func:`loca_mm.functional.calibration_summary`.

    Args:
        tau (float): temperature, > 0.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
        loss_weight (float): weight of the loss, >= 0.
        ignore_index (int, optional): label left out of the batch mean.
        check_labels (bool): refuse labels outside [0, C).
        log_stats (bool): accumulate ``loca_ratio``/``loca_scale`` in
            training.
        standardize (bool): Logit Standardization of student and teacher
            logits before the temperature (and LoCa).
    """

    def __init__(self, tau: float, calibrate: str, loss_weight: float,
                 ignore_index: Optional[int], check_labels: bool,
                 log_stats: bool, standardize: bool) -> None:
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
        self.standardize = check_flag(owner, 'standardize', standardize)
        self.calibration_totals = torch.zeros(3)
        # Set by LoCaLossHook before training (see attach_runner).
        self.stats_collected = False
        self.train_loop_by_epoch: Optional[bool] = None

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

    def set_training_progress(self, epoch: int, iteration: int) -> None:
        """Called by ``LoCaLossHook`` before each training iteration with
        the 0-based epoch and iteration; losses with a warm-up use them."""

    def take_calibration_totals(self) -> Tensor:
        """The calibration counts summed since the last call, on the loss's
        device, without a host read; the sums restart from zero.

        Returns:
            Tensor: float32 (3,): valid samples, calibrated samples, sum of
            ``s`` over the calibrated ones.
        """
        totals = self.calibration_totals
        self.calibration_totals = torch.zeros_like(totals)
        return totals

    def weighted(self, result: DistillLoss, factor=1.0) -> Tensor:
        """Accumulate the calibration statistics and weight the loss.

        Args:
            result (DistillLoss): output of a functional loss.
            factor (float | Tensor): a further weight (DKD's warm-up).

        Returns:
            Tensor: ``factor * loss_weight * result.loss``.
        """
        if self.training and self.collects_stats:
            if not (self.stats_collected or torch.compiler.is_compiling()):
                self._warn_uncollected()
            counts = calibration_counts(result)
            self.calibration_totals = self.calibration_totals.to(
                counts.device) + counts
        return factor * self.loss_weight * result.loss

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
