"""LoCa in TRL's generalized knowledge distillation (``GKDTrainer``).

A TRL user swaps two names::

    from loca_mm.integrations.trl import LoCaGKDConfig, LoCaGKDTrainer

    args = LoCaGKDConfig(output_dir='out', lmbda=0.5, beta=0.5,
                         calibrate='wrong', alpha=0.9)
    trainer = LoCaGKDTrainer(model=student, teacher_model=teacher,
                             args=args, train_dataset=chat_dataset,
                             processing_class=tokenizer)
    trainer.train()

Everything else is TRL's: the data collator, on-policy generation
(``lmbda``), sequence-level KD (``seq_kd``), the forward passes. Only the
divergence changes: the teacher's next-token distribution is LoCa-calibrated
(``functional.generalized_jsd_loss``) towards the batch's labels when these
are the data's ground truth. LoCa corrects a teacher towards the true token,
so batches whose labels are sampled (from the student with probability
``lmbda``, or from the teacher with ``seq_kd``) are compared with the
uncalibrated teacher. Training log entries carry ``loca_ratio`` and
``loca_scale`` over the ground-truth batches since the last log.

TRL 1.16's ``DistillationTrainer`` has no counterpart here: it trains on
student-generated completions only, so no batch has ground-truth labels for
LoCa to calibrate towards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor
from trl.experimental.gkd import GKDConfig, GKDTrainer

from loca_mm import functional as LF
from .transformers import LoCaStatsLogMixin

IGNORE_INDEX = -100  # TRL's label of prompt and padding positions


@dataclass
class LoCaGKDConfig(GKDConfig):
    """``GKDConfig`` plus LoCa's settings.

    Args:
        calibrate (str): LoCa's mode on ground-truth batches: ``'wrong'``
            (correct the teacher where it does not rank the label first),
            ``'margin'`` (every token) or ``'none'`` (TRL's GKD unchanged).
            Defaults to ``'wrong'``.
        alpha (float): LoCa's alpha in (0, 1): how much of the non-label
            mass the calibrated teacher keeps. Defaults to 0.9.
    """
    calibrate: str = field(
        default='wrong',
        metadata={
            'help':
            "LoCa's calibration of the teacher on ground-truth batches: "
            "'wrong', 'margin' or 'none' (plain GKD). On-policy and seq_kd "
            'batches are never calibrated.'
        })
    alpha: float = field(
        default=0.9,
        metadata={
            'help':
            "LoCa's alpha in (0, 1): the share of the teacher's non-label "
            'probability mass the calibrated teacher keeps.'
        })

    def __post_init__(self) -> None:
        super().__post_init__()
        LF.check_calibration_args(self.alpha, 1.0, self.calibrate)


class LoCaGKDTrainer(LoCaStatsLogMixin, GKDTrainer):
    """TRL's ``GKDTrainer`` towards a LoCa-calibrated teacher.

    Takes what ``GKDTrainer`` takes, with ``args`` a :class:`LoCaGKDConfig`.
    The loss is TRL's generalized JSD (same ``beta``, same masking and
    normalisation, ``num_items_in_batch`` included), computed by
    ``functional.generalized_jsd_loss`` on the teacher calibrated towards
    the labels of ground-truth batches and on the teacher itself for
    generated ones; with ``calibrate='none'`` it is TRL's loss.
    """

    def __init__(self, *args, **kwargs) -> None:
        config = kwargs.get('args', args[2] if len(args) > 2 else None)
        if not isinstance(config, LoCaGKDConfig):
            raise TypeError('LoCaGKDTrainer needs LoCaGKDConfig (GKDConfig '
                            'plus calibrate and alpha), got '
                            f'{type(config).__name__}')
        # Whether the batch in hand has sampled labels (set by
        # generate_on_policy_outputs), and the LoCa sums since the last log.
        self._labels_generated = False
        self._loca_stats: Optional[Tensor] = None
        super().__init__(*args, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        """GKD's step; :meth:`generate_on_policy_outputs` marks the batch
        whose labels it replaces."""
        self._labels_generated = False
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        finally:
            self._labels_generated = False

    def generate_on_policy_outputs(self, model, inputs, generation_config):
        """GKD's generation (student with ``lmbda``, teacher with
        ``seq_kd``); its labels are samples, not the ground truth. (An
        instance method here, a static one in GKD: it records that the
        batch's labels were sampled.)"""
        self._labels_generated = True
        return GKDTrainer.generate_on_policy_outputs(model, inputs,
                                                     generation_config)

    def generalized_jsd_loss(self,
                             student_logits: Tensor,
                             teacher_logits: Tensor,
                             labels: Optional[Tensor] = None,
                             beta: float = 0.5,
                             temperature: float = 1.0,
                             reduction: str = 'batchmean',
                             num_items_in_batch=None) -> Tensor:
        """GKD's divergence (``GKDTrainer.compute_loss`` calls it with
        shifted logits and labels), towards the LoCa teacher on
        ground-truth batches."""
        if labels is None:
            raise ValueError('LoCaGKDTrainer needs labels (token ids with '
                             f'{IGNORE_INDEX} at prompt and padding '
                             'positions) to calibrate the teacher')
        if reduction != 'batchmean':
            raise ValueError("LoCaGKDTrainer reduces as GKD's compute_loss "
                             f"does ('batchmean'), got {reduction!r}")
        calibrate = 'none' if self._labels_generated else self.args.calibrate
        result = LF.generalized_jsd_loss(
            student_logits,
            teacher_logits,
            labels,
            temperature,
            self.args.alpha,
            calibrate,
            beta=beta,
            ignore_index=IGNORE_INDEX)
        if self.model.training and calibrate != 'none':
            self._accumulate_loca_stats(result)
        # loca_mm's losses carry tau**2 (gradients independent of tau); TRL's
        # divergence does not.
        loss = result.loss / temperature**2
        if num_items_in_batch is not None:
            # The mean over this batch's tokens -> the sum over them divided
            # by the accumulated batch's count, as TRL normalises.
            total = torch.as_tensor(num_items_in_batch, device=loss.device)
            loss = loss * result.valid.sum() / total
        return loss
