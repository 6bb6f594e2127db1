"""Decoupled KD on a LoCa-calibrated teacher."""
from typing import Optional, Union

import torch
from torch import Tensor

from loca_mm.functional import dkd_loss
from mmrazor.registry import MODELS
from .base_calibrated_loss import BaseCalibratedLoss
from .validation import check_integer, check_real

# The argument names of loca_mm 0.1 and what they are called now. With
# them, alpha was DKD's TCKD weight, so reading them would move weights.
RENAMED = {'beta': 'nckd_weight', 'loca_alpha': 'alpha'}


@MODELS.register_module()
class DKDLoCaLoss(BaseCalibratedLoss):
    """DKD (Zhao et al., CVPR 2022) whose teacher is calibrated by LoCa:
    ``loss_weight * warmup * tau**2 * mean(tckd_weight * TCKD +
    nckd_weight * NCKD)`` (:func:`loca_mm.functional.dkd_loss`). Only TCKD
    sees the calibration (LoCa keeps the non-target ratios).

    ``calibrate='none'`` is plain DKD, averaged over the batch (unlike
    mmrazor 1.0.0's ``DKDLoss``, which sums), with the teacher detached.

    Args:
        tau (float): temperature. Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        tckd_weight (float): TCKD weight (DKD's alpha), >= 0.
            Defaults to 1.0.
        nckd_weight (float): NCKD weight (DKD's beta), >= 0.
            Defaults to 8.0.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
            Defaults to ``'wrong'``.
        warmup_epochs (int): the whole term ramps linearly over this many
            epochs: epoch ``e`` (from 1) gets ``min(e / warmup_epochs, 1)``.
            Needs an epoch-based train loop. 0 disables it. Defaults to 0.
        warmup_iters (int): the same over iterations, for any train loop.
            At most one of the two may be set. Defaults to 0.
        loss_weight (float): weight of the loss, >= 0. Defaults to 1.0.
        ignore_index (int, optional): label left out of the batch mean.
        check_labels (bool): refuse labels outside [0, C). Defaults to True.
        log_stats (bool): accumulate ``loca_ratio``/``loca_scale`` in
            training (see :class:`BaseCalibratedLoss`). Defaults to True.
        standardize (bool): Logit Standardization (Sun et al., CVPR 2024):
            each row of student and teacher logits becomes ``(z - mean) /
            (std + 1e-7)`` before the temperature and LoCa
            (:func:`loca_mm.functional.standardize_logits`).
            Defaults to False.

    The warm-up learns the training progress from
    :meth:`set_training_progress`, which ``LoCaLossHook`` calls before each
    iteration (outside mmengine, call it yourself): ``forward`` looks
    nothing up, so it compiles as one graph. Every argument is checked at
    construction (a TypeError or ValueError naming it); the names of
    loca_mm 0.1 (``beta``, ``loca_alpha``) are refused naming today's.
    """

    def __init__(self,
                 tau: float = 4.0,
                 alpha: float = 0.9,
                 tckd_weight: float = 1.0,
                 nckd_weight: float = 8.0,
                 calibrate: str = 'wrong',
                 warmup_epochs: int = 0,
                 warmup_iters: int = 0,
                 loss_weight: float = 1.0,
                 ignore_index: Optional[int] = None,
                 check_labels: bool = True,
                 log_stats: bool = True,
                 standardize: bool = False,
                 **unknown) -> None:
        for name in unknown:
            if name in RENAMED:
                raise TypeError(
                    f'DKDLoCaLoss: {name} is the name of loca_mm 0.1; it is '
                    f'{RENAMED[name]} now (alpha is LoCa\'s alpha, DKD\'s '
                    'weights are tckd_weight and nckd_weight)')
            raise TypeError(f'DKDLoCaLoss got an unexpected argument {name!r}')
        super().__init__(tau, calibrate, loss_weight, ignore_index,
                         check_labels, log_stats, standardize)
        owner = 'DKDLoCaLoss'
        self.alpha = check_real(
            owner,
            'alpha',
            alpha,
            greater_than=0.0,
            less_than=1.0,
            hint="; it is LoCa's alpha, DKD's TCKD weight is tckd_weight")
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
        # The 0-based epoch or iteration of the warm-up, as a tensor updated
        # in place: a compiled forward reads it without a recompilation.
        # The same on every process, so DDP's broadcast may copy it; not in
        # checkpoints.
        self.register_buffer(
            'warmup_position', torch.zeros(()), persistent=False)
        self.progress_known = False

    def set_training_progress(self, epoch: int, iteration: int) -> None:
        """Set the 0-based epoch and iteration being trained (the warm-up's
        position); ``LoCaLossHook`` calls it before each iteration."""
        self.warmup_position.fill_(epoch if self.warmup_epochs else iteration)
        self.progress_known = True

    def warmup_factor(self) -> Union[float, Tensor]:
        """The warm-up weight of the current epoch or iteration (1.0
        without warm-up)."""
        length = self.warmup_epochs or self.warmup_iters
        if not length:
            return 1.0
        if self.warmup_epochs and self.train_loop_by_epoch is not True:
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
        if not self.progress_known:
            raise RuntimeError(
                'DKDLoCaLoss: the warm-up needs the training progress, which '
                "no one set: add custom_hooks=[dict(type='LoCaLossHook')] to "
                'the config, or call set_training_progress(epoch, '
                'iteration) before each iteration; or set warmup_epochs=0 '
                'and warmup_iters=0')
        return ((self.warmup_position + 1) / length).clamp(max=1.0)

    def forward(self, preds_S: Tensor, preds_T: Tensor,
                gt_labels: Tensor) -> Tensor:
        """The weighted loss of student logits (..., C), teacher logits
        (..., C) and labels (...) or soft labels (..., C)."""
        result = dkd_loss(
            preds_S, preds_T, gt_labels, self.tau, self.alpha, self.calibrate,
            tckd_weight=self.tckd_weight, nckd_weight=self.nckd_weight,
            ignore_index=self.ignore_index, check_labels=self.check_labels,
            standardize=self.standardize)
        return self.weighted(result, self.warmup_factor())

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, alpha={self.alpha}, '
                f'tckd_weight={self.tckd_weight}, '
                f'nckd_weight={self.nckd_weight}, '
                f'calibrate={self.calibrate!r}, '
                f'standardize={self.standardize}, '
                f'warmup_epochs={self.warmup_epochs}, '
                f'warmup_iters={self.warmup_iters}')
