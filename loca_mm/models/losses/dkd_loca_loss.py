"""Decoupled KD on a LoCa-calibrated teacher."""
import warnings
from typing import Optional

from mmengine.logging import MessageHub
from torch import Tensor

from loca_mm import functional as LF
from mmrazor.registry import MODELS
from .base_calibrated_loss import BaseCalibratedLoss
from .validation import check_integer, check_real


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
        tckd_weight (float): TCKD weight (DKD's alpha), >= 0.
            Defaults to 1.0.
        nckd_weight (float): NCKD weight (DKD's beta), >= 0.
            Defaults to 8.0.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
            Defaults to ``'wrong'``.
        warmup_epochs (int): the whole term ramps linearly over this many
            epochs: epoch ``e`` (counted from 1) gets ``min(e / warmup, 1)``,
            read from mmengine's MessageHub. Needs an epoch-based train loop
            (``IterBasedTrainLoop`` keeps epoch 0 there, so training stops
            at the first step; use ``warmup_iters``), known through
            ``LoCaLossHook``. 0 disables it. Defaults to 0.
        warmup_iters (int): the same ramp over iterations: iteration ``i``
            (counted from 1) gets ``min(i / warmup, 1)``; works with any
            mmengine train loop. At most one of the two warm-ups may be set.
            Defaults to 0.
        loss_weight (float): weight of the loss, >= 0. Defaults to 1.0.
        ignore_index (int, optional): label left out of the batch mean.
        check_labels (bool): refuse labels outside [0, C). Defaults to True.
        log_stats (bool): accumulate ``loca_ratio``/``loca_scale`` during
            training (see :class:`BaseCalibratedLoss`). Defaults to True.
        **renamed: ``beta`` and ``loca_alpha``, the names before loca_mm 0.2
            (with them, ``alpha`` is the TCKD weight); a FutureWarning
            says what to write instead.

    Every argument is checked at construction: a wrong type is a
    TypeError, a value out of range a ValueError, each naming the argument.
    """

    def __init__(self,
                 tau: float = 4.0,
                 alpha: Optional[float] = None,
                 tckd_weight: float = 1.0,
                 nckd_weight: float = 8.0,
                 calibrate: str = 'wrong',
                 warmup_epochs: int = 0,
                 warmup_iters: int = 0,
                 loss_weight: float = 1.0,
                 ignore_index: Optional[int] = None,
                 check_labels: bool = True,
                 log_stats: bool = True,
                 **renamed) -> None:
        unknown = set(renamed) - {'beta', 'loca_alpha'}
        if unknown:
            raise TypeError('DKDLoCaLoss got unexpected arguments '
                            f'{sorted(unknown)}')
        alpha_hint = ''
        if renamed:
            old = renamed if alpha is None else {'alpha': alpha, **renamed}
            new = _renamed_dkd_args(old)
            alpha = new.get('alpha')
            tckd_weight = new.get('tckd_weight', tckd_weight)
            nckd_weight = new.get('nckd_weight', nckd_weight)
        elif alpha is not None:
            alpha_hint = ("; it is LoCa's alpha, DKD's TCKD weight (called "
                          'alpha before loca_mm 0.2) is tckd_weight')
        super().__init__(tau, calibrate, loss_weight, ignore_index,
                         check_labels, log_stats)
        owner = 'DKDLoCaLoss'
        self.alpha = check_real(
            owner,
            'alpha',
            0.9 if alpha is None else alpha,
            greater_than=0.0,
            less_than=1.0,
            hint=alpha_hint)
        self.tckd_weight = check_real(
            owner, 'tckd_weight', tckd_weight, at_least=0.0)
        self.nckd_weight = check_real(
            owner, 'nckd_weight', nckd_weight, at_least=0.0)
        self.warmup_epochs = check_integer(
            owner, 'warmup_epochs', warmup_epochs, at_least=0)
        self.warmup_iters = check_integer(
            owner, 'warmup_iters', warmup_iters, at_least=0)
        if self.warmup_epochs and self.warmup_iters:
            raise ValueError(
                f'DKDLoCaLoss: warmup_epochs={warmup_epochs!r} and '
                f'warmup_iters={warmup_iters!r}: set at most one of them')

    def warmup_factor(self) -> float:
        """The warm-up weight of the current epoch or iteration (1.0
        without warm-up)."""
        if self.warmup_iters:
            return min((self._progress('iter') + 1) / self.warmup_iters, 1.0)
        if not self.warmup_epochs:
            return 1.0
        if self.train_loop_by_epoch is not True:
            loop = ('an iteration-based train loop, where mmengine keeps '
                    'epoch 0 (the DKD term would stay weighted '
                    f'1/{self.warmup_epochs} for good)'
                    if self.train_loop_by_epoch is False else
                    'a train loop that no LoCaLossHook identified as '
                    "epoch-based (add custom_hooks=[dict(type='LoCaLossHook')]"
                    "; loca_mm's distillation configs have it)")
            raise RuntimeError(
                f'DKDLoCaLoss(warmup_epochs={self.warmup_epochs}) trains '
                f'under {loop}: use warmup_iters, or an EpochBasedTrainLoop')
        # MessageHub holds the 0-based epoch being trained.
        return min((self._progress('epoch') + 1) / self.warmup_epochs, 1.0)

    @staticmethod
    def _progress(unit: str) -> int:
        """The 0-based epoch or iteration the Runner is training."""
        value = MessageHub.get_current_instance().get_info(unit)
        if value is None:
            raise RuntimeError(
                f"DKDLoCaLoss's warm-up reads the current {unit} from "
                f"mmengine's MessageHub, but no '{unit}' is set there: train "
                'with an mmengine Runner, or set warmup_epochs=0 and '
                'warmup_iters=0')
        return value

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
                f'warmup_epochs={self.warmup_epochs}, '
                f'warmup_iters={self.warmup_iters}')
