"""KD towards a LoCa-calibrated teacher."""
from typing import Optional

from torch import Tensor

from loca_mm.functional import loca_kd_loss
from mmrazor.registry import MODELS
from .base_calibrated_loss import BaseCalibratedLoss
from .validation import check_real


@MODELS.register_module()
class LoCaLoss(BaseCalibratedLoss):
    """KD whose teacher distribution is calibrated by LoCa:
    ``loss_weight * tau**2 * mean KL(q || p_s)``
    (:func:`loca_mm.functional.loca_kd_loss`); ``calibrate='none'`` is plain
    KD, so one module gives the method, the baseline and the ablation.

    Args:
        tau (float): temperature. Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1): the label leads the best
            non-target class by ``1 - alpha`` after calibration.
            Defaults to 0.9.
        loss_weight (float): weight of the loss. Defaults to 1.0.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
            Defaults to ``'wrong'``.
        ignore_index (int, optional): label left out of the batch mean.
        check_labels (bool): refuse labels outside [0, C). Defaults to True.
        log_stats (bool): accumulate ``loca_ratio``/``loca_scale`` in
            training (see :class:`BaseCalibratedLoss`). Defaults to True.
        standardize (bool): Logit Standardization (Sun et al., CVPR 2024):
            each row of student and teacher logits becomes ``(z - mean) /
            (std + 1e-7)`` before the temperature and LoCa
            (:func:`loca_mm.functional.standardize_logits`).
            Defaults to False.

    Every argument is checked at construction (a TypeError or ValueError
    naming it).
    """

    def __init__(self,
                 tau: float = 4.0,
                 alpha: float = 0.9,
                 loss_weight: float = 1.0,
                 calibrate: str = 'wrong',
                 ignore_index: Optional[int] = None,
                 check_labels: bool = True,
                 log_stats: bool = True,
                 standardize: bool = False) -> None:
        super().__init__(tau, calibrate, loss_weight, ignore_index,
                         check_labels, log_stats, standardize)
        self.alpha = check_real(
            'LoCaLoss', 'alpha', alpha, greater_than=0.0, less_than=1.0)

    def forward(self, preds_S: Tensor, preds_T: Tensor,
                gt_labels: Tensor) -> Tensor:
        """The weighted loss of student logits (..., C), teacher logits
        (..., C) and labels (...) or soft labels (..., C)."""
        result = loca_kd_loss(
            preds_S, preds_T, gt_labels, self.tau, self.alpha, self.calibrate,
            ignore_index=self.ignore_index, check_labels=self.check_labels,
            standardize=self.standardize)
        return self.weighted(result)

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, alpha={self.alpha}, '
                f'calibrate={self.calibrate!r}, '
                f'standardize={self.standardize}, '
                f'loss_weight={self.loss_weight}')
