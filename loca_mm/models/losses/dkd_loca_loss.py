"""Decoupled KD on a LoCa-calibrated teacher."""
import warnings
from typing import Optional

from mmengine.logging import MessageHub
from torch import Tensor

from loca_mm import functional as LF
from mmrazor.registry import MODELS
from .base_calibrated_loss import BaseCalibratedLoss


def _renamed_dkd_args(old: dict) -> dict:
    """Map the argument names of loca_mm < 0.2 onto today's.

    Before, ``alpha`` was DKD's TCKD weight, ``beta`` its NCKD weight and
    ``loca_alpha`` LoCa's alpha. A call that names ``beta`` or ``loca_alpha``
    uses the old names throughout, its ``alpha`` included.
    """
    names = {'alpha': 'tckd_weight', 'beta': 'nckd_weight',
             'loca_alpha': 'alpha'}
    renamed = {names[k]: v for k, v in old.items()}
    warnings.warn(
        'DKDLoCaLoss: ' + ', '.join(f'{k}={v!r}' for k, v in old.items()) +
        ' use the old argument names; write ' +
        ', '.join(f'{k}={v!r}' for k, v in renamed.items()) +
        " (alpha is LoCa's alpha in every loca_mm loss, DKD's weights are "
        'tckd_weight and nckd_weight)', FutureWarning, stacklevel=3)
    return renamed


@MODELS.register_module()
class DKDLoCaLoss(BaseCalibratedLoss):
    """DKD (Zhao et al., CVPR 2022) whose teacher is calibrated by LoCa.

    ``loss = loss_weight * warmup * tau**2 * mean(tckd_weight * TCKD +
    nckd_weight * NCKD)`` (DKD's alpha and beta are its two weights). LoCa
    scales all non-target probabilities by one factor, so the teacher's
    distribution over non-target classes, and with it NCKD, is the same as
    without calibration: only TCKD (target vs. non-target) sees the
    calibrated ``q_y``.

    ``calibrate='none'`` is a correct plain DKD: averaged over the batch (so
    duplicating a batch leaves the loss unchanged, unlike mmrazor 1.0.0's
    ``DKDLoss``, which sums), with the teacher detached.

    Args:
        tau (float): temperature. Defaults to 4.0.
        alpha (float, optional): LoCa's alpha in (0, 1), as in ``LoCaLoss``.
            Defaults to 0.9.
        tckd_weight (float): TCKD weight (DKD's alpha). Defaults to 1.0.
        nckd_weight (float): NCKD weight (DKD's beta). Defaults to 8.0.
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
        **renamed: ``beta`` and ``loca_alpha``, the names before loca_mm 0.2
            (with them, ``alpha`` is the TCKD weight); a FutureWarning
            says what to write instead.
    """

    def __init__(self,
                 tau: float = 4.0,
                 alpha: Optional[float] = None,
                 tckd_weight: float = 1.0,
                 nckd_weight: float = 8.0,
                 calibrate: str = 'wrong',
                 warmup_epochs: int = 0,
                 loss_weight: float = 1.0,
                 ignore_index: Optional[int] = None,
                 check_labels: bool = True,
                 log_stats: bool = True,
                 **renamed) -> None:
        unknown = set(renamed) - {'beta', 'loca_alpha'}
        if unknown:
            raise TypeError('DKDLoCaLoss got unexpected arguments '
                            f'{sorted(unknown)}')
        if renamed:
            old = renamed if alpha is None else {'alpha': alpha, **renamed}
            new = _renamed_dkd_args(old)
            alpha = new.get('alpha')
            tckd_weight = new.get('tckd_weight', tckd_weight)
            nckd_weight = new.get('nckd_weight', nckd_weight)
        if alpha is None:
            alpha = 0.9
        elif not renamed and not 0.0 < alpha < 1.0:
            raise ValueError(
                f"DKDLoCaLoss: alpha={alpha!r} is LoCa's alpha and must lie "
                "in (0, 1); DKD's TCKD weight (called alpha before loca_mm "
                '0.2) is tckd_weight')
        LF.check_calibration_args(alpha, tau, calibrate)
        if warmup_epochs < 0:
            raise ValueError(
                f'warmup_epochs must be >= 0, got {warmup_epochs!r}')
        super().__init__(tau, calibrate, loss_weight, ignore_index,
                         check_labels, log_stats)
        self.alpha = alpha
        self.tckd_weight = tckd_weight
        self.nckd_weight = nckd_weight
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
            calibrate=self.calibrate,
            tckd_weight=self.tckd_weight,
            nckd_weight=self.nckd_weight,
            ignore_index=self.ignore_index,
            check_range=self.check_labels)
        return self.weighted(result, self.warmup_factor())

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, alpha={self.alpha}, '
                f'tckd_weight={self.tckd_weight}, '
                f'nckd_weight={self.nckd_weight}, '
                f'calibrate={self.calibrate!r}, '
                f'warmup_epochs={self.warmup_epochs}')
