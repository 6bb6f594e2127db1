"""Decoupled KD on a LoCa-calibrated teacher."""
from typing import Optional

from mmengine.logging import MessageHub
from torch import Tensor

from loca_mm import functional as LF
from mmrazor.registry import MODELS
from .base_calibrated_loss import BaseCalibratedLoss


@MODELS.register_module()
class DKDLoCaLoss(BaseCalibratedLoss):
    """DKD (Zhao et al., CVPR 2022) whose teacher is calibrated by LoCa.

    ``loss = loss_weight * warmup * tau**2 * mean(alpha * TCKD + beta *
    NCKD)``. LoCa scales all non-target probabilities by one factor, so the
    teacher's distribution over non-target classes, and with it NCKD, is the
    same as without calibration: only TCKD (target vs. non-target) sees the
    calibrated ``q_y``.

    ``calibrate='none'`` is a correct plain DKD: averaged over the batch (so
    duplicating a batch leaves the loss unchanged, unlike mmrazor 1.0.0's
    ``DKDLoss``, which sums), with the teacher detached.

    Args:
        tau (float): temperature. Defaults to 4.0.
        alpha (float): TCKD weight. Defaults to 1.0.
        beta (float): NCKD weight. Defaults to 8.0.
        loca_alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
            Defaults to ``'wrong'``.
        warmup_epochs (int): the whole term ramps linearly over this many
            epochs: epoch ``e`` (counted from 1) gets ``min(e / warmup, 1)``,
            read from mmengine's MessageHub (an epoch-based train loop sets
            it). 0 disables the warm-up. Defaults to 0.
        loss_weight (float): weight of the loss. Defaults to 1.0.
        ignore_index (int, optional): label left out of the batch mean.
        check_labels (bool): raise on labels outside [0, C) (one device
            synchronisation per call on GPU). Defaults to True.
        log_stats (bool): log ``loca_ratio``/``loca_scale`` during training.
            Defaults to True.
    """

    def __init__(self,
                 tau: float = 4.0,
                 alpha: float = 1.0,
                 beta: float = 8.0,
                 loca_alpha: float = 0.9,
                 calibrate: str = 'wrong',
                 warmup_epochs: int = 0,
                 loss_weight: float = 1.0,
                 ignore_index: Optional[int] = None,
                 check_labels: bool = True,
                 log_stats: bool = True) -> None:
        LF.check_calibration_args(loca_alpha, tau, calibrate)
        if warmup_epochs < 0:
            raise ValueError(
                f'warmup_epochs must be >= 0, got {warmup_epochs!r}')
        super().__init__(tau, calibrate, loss_weight, ignore_index,
                         check_labels, log_stats)
        self.alpha = alpha
        self.beta = beta
        self.loca_alpha = loca_alpha
        self.warmup_epochs = warmup_epochs

    def warmup_factor(self) -> float:
        """The warm-up weight of the current epoch (1.0 without warm-up)."""
        if not self.warmup_epochs:
            return 1.0
        epoch = MessageHub.get_current_instance().get_info('epoch')
        if epoch is None:
            raise RuntimeError(
                'DKDLoCaLoss(warmup_epochs>0) reads the current epoch from '
                "mmengine's MessageHub, but no 'epoch' is set there: train "
                'with an epoch-based loop, or set warmup_epochs=0')
        # MessageHub holds the 0-based epoch being trained.
        return min((epoch + 1) / self.warmup_epochs, 1.0)

    def forward(self, preds_S: Tensor, preds_T: Tensor,
                gt_labels: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            preds_S (Tensor): student logits (..., C).
            preds_T (Tensor): teacher logits (..., C); detached inside.
            gt_labels (Tensor): labels (...) or soft labels (..., C).

        Returns:
            Tensor: the weighted scalar loss.
        """
        result = LF.dkd_loss(
            preds_S,
            preds_T,
            gt_labels,
            tau=self.tau,
            alpha=self.alpha,
            beta=self.beta,
            loca_alpha=self.loca_alpha,
            calibrate=self.calibrate,
            ignore_index=self.ignore_index,
            check_range=self.check_labels)
        return self.weighted(result, self.warmup_factor())

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, alpha={self.alpha}, beta={self.beta}, '
                f'loca_alpha={self.loca_alpha}, '
                f'calibrate={self.calibrate!r}, '
                f'warmup_epochs={self.warmup_epochs}')
