"""LoCa-calibrated logit distillation (KD towards a calibrated teacher)."""
from typing import Optional

from torch import Tensor

from loca_mm import functional as LF
from mmrazor.registry import MODELS
from .base_calibrated_loss import BaseCalibratedLoss
from .validation import check_real


@MODELS.register_module()
class LoCaLoss(BaseCalibratedLoss):
    """KD whose teacher distribution is calibrated by LoCa.

    Returns ``loss_weight * tau**2 * mean KL(q || softmax(preds_S / tau))``
    where ``q`` is :func:`loca_mm.functional.loca_calibrate` applied to the
    detached ``softmax(preds_T / tau)``. ``calibrate='none'`` is plain KD, so
    one module gives the method, the baseline and the ablation.

    Soft labels (Mixup/CutMix) are reduced to their argmax class; logits of
    any shape (..., C) are accepted (token-level use); float16/bfloat16
    logits are computed in float32.

    Args:
        tau (float): temperature. Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1); the label leads the best
            non-target class by ``1 - alpha`` after calibration.
            Defaults to 0.9.
        loss_weight (float): weight of the loss. Defaults to 1.0.
        calibrate (str): ``'wrong'`` (samples the teacher gets wrong),
            ``'margin'`` (every sample, ``s = min(alpha * sigma, 1)``) or
            ``'none'``. Defaults to ``'wrong'``.
        ignore_index (int, optional): label left out of the batch mean.
        check_labels (bool): refuse labels outside [0, C) (see
            :func:`loca_mm.functional.prepare_targets`). Defaults to True.
        log_stats (bool): accumulate ``loca_ratio``/``loca_scale`` on the
            device during training, for ``LoCaLossHook`` to log (see
            :class:`BaseCalibratedLoss`). Defaults to True.

    Every argument is checked at construction: a wrong type is a
    TypeError, a value out of range a ValueError, each naming the argument.
    """

    def __init__(self,
                 tau: float = 4.0,
                 alpha: float = 0.9,
                 loss_weight: float = 1.0,
                 calibrate: str = 'wrong',
                 ignore_index: Optional[int] = None,
                 check_labels: bool = True,
                 log_stats: bool = True) -> None:
        super().__init__(tau, calibrate, loss_weight, ignore_index,
                         check_labels, log_stats)
        self.alpha = check_real(
            'LoCaLoss', 'alpha', alpha, greater_than=0.0, less_than=1.0)

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
        result = LF.loca_kd_loss(
            preds_S,
            preds_T,
            gt_labels,
            tau=self.tau,
            alpha=self.alpha,
            calibrate=self.calibrate,
            ignore_index=self.ignore_index,
            check_range=self.check_labels)
        return self.weighted(result)

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, alpha={self.alpha}, '
                f'calibrate={self.calibrate!r}, '
                f'loss_weight={self.loss_weight}')
