"""LoCa distillation of causal language models on Hugging Face ``Trainer``.

Every response token is one LoCa sample: its "label" is the ground-truth
next token, and the teacher's next-token distribution at that position is
calibrated towards it before the student is pulled to it. The loss per batch
is

    ce_weight * CE + kd_weight * D,

both averaged over response tokens (positions whose label is not
``IGNORE_INDEX``), with D the LoCa-KD of ``functional.loca_kd_loss``
(``distill_loss='kd'``) or DKD+LoCa of ``functional.dkd_loss``
(``distill_loss='dkd'``); ``calibrate``, ``alpha`` and ``tau`` mean what
they mean in ``LoCaLoss``, and ``calibrate='none'`` gives plain KD / DKD.

The loss runs over chunks of tokens (``functional.chunked_distill_loss``):
beside the two logit tensors it holds one (tokens x vocab) gradient buffer
for backward, not the several that an unchunked KD keeps.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Trainer, TrainingArguments

from loca_mm import functional as LF
from .instruction_data import IGNORE_INDEX

DISTILL_LOSSES = ('kd', 'dkd')


@dataclass
class LoCaDistillArguments(TrainingArguments):
    """``TrainingArguments`` plus the distillation loss.

    Defaults follow MiniLLM's KD baseline on Dolly (CE and KD weighted
    0.5/0.5, temperature 1) and LoCa's alpha 0.9.
    """
    distill_loss: str = field(
        default='kd',
        metadata={
            'help': "'kd': KD towards the LoCa teacher (as LoCaLoss); "
            "'dkd': DKD on the LoCa teacher (as DKDLoCaLoss)",
            'choices': DISTILL_LOSSES
        })
    calibrate: str = field(
        default='wrong',
        metadata={
            'help': "'wrong' (tokens the teacher gets wrong), 'margin' "
            "or 'none' (plain KD / DKD)",
            'choices': LF.CALIBRATION_MODES
        })
    alpha: float = field(
        default=0.9, metadata={'help': "LoCa's alpha in (0, 1)"})
    tau: float = field(
        default=1.0, metadata={'help': 'distillation temperature'})
    ce_weight: float = field(
        default=0.5,
        metadata={'help': 'weight of the cross-entropy on response tokens'})
    kd_weight: float = field(
        default=0.5, metadata={'help': 'weight of the distillation term'})
    tckd_weight: float = field(
        default=1.0,
        metadata={'help': "DKD's TCKD weight, its alpha (distill_loss=dkd)"})
    nckd_weight: float = field(
        default=8.0,
        metadata={'help': "DKD's NCKD weight, its beta (distill_loss=dkd)"})
    loss_chunk_size: int = field(
        default=256,
        metadata={
            'help':
            'tokens per chunk of the per-token loss; bounds its '
            'temporary memory to a few (chunk x vocab) buffers'
        })

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distill_loss not in DISTILL_LOSSES:
            raise ValueError(f'distill_loss must be one of {DISTILL_LOSSES}, '
                             f'got {self.distill_loss!r}')
        LF.check_calibration_args(self.alpha, self.tau, self.calibrate)
        if self.ce_weight < 0 or self.kd_weight < 0:
            raise ValueError('ce_weight and kd_weight must be >= 0, got '
                             f'{self.ce_weight!r} and {self.kd_weight!r}')
        if self.loss_chunk_size < 1:
            raise ValueError('loss_chunk_size must be >= 1, got '
                             f'{self.loss_chunk_size!r}')

    def distill_function(self) -> Callable[..., LF.DistillLoss]:
        """The functional distillation loss with this run's settings."""
        if self.distill_loss == 'kd':
            return functools.partial(
                LF.loca_kd_loss,
                tau=self.tau,
                alpha=self.alpha,
                calibrate=self.calibrate)
        return functools.partial(
            LF.dkd_loss,
            tau=self.tau,
            alpha=self.alpha,
            calibrate=self.calibrate,
            tckd_weight=self.tckd_weight,
            nckd_weight=self.nckd_weight)


def next_token_labels(labels: Tensor,
                      ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Align token labels with causal-LM logits.

    The logits at position ``t`` predict token ``t + 1``, so position ``t``
    gets ``labels[..., t + 1]`` and the last position, which predicts
    nothing, gets ``ignore_index``. Shifting the labels (not the logits)
    keeps the logits contiguous: no (tokens x vocab) copy.

    Args:
        labels (Tensor): token labels (..., T), ``ignore_index`` where no
            loss is wanted.
        ignore_index (int): the ignored label. Defaults to -100.

    Returns:
        Tensor: labels (..., T) for the logits at each position.
    """
    return F.pad(labels[..., 1:], (0, 1), value=ignore_index)


def _ce_plus_distill(preds_S: Tensor, preds_T: Tensor, target: Tensor, *,
                     ignore_index: int, check_range: bool,
                     distill_fn: Callable[..., LF.DistillLoss],
                     ce_weight: float, kd_weight: float) -> LF.DistillLoss:
    """``ce_weight * CE + kd_weight * distill`` for one chunk of tokens."""
    result = distill_fn(
        preds_S,
        preds_T,
        target,
        ignore_index=ignore_index,
        check_range=check_range)
    loss = kd_weight * result.loss
    if ce_weight:
        ce_sum = F.cross_entropy(
            preds_S.float(),
            target,
            ignore_index=ignore_index,
            reduction='sum')
        loss = loss + ce_weight * ce_sum / result.valid.sum().clamp_min(1)
    return result._replace(loss=loss)


def response_token_loss(student_logits: Tensor,
                        teacher_logits: Tensor,
                        labels: Tensor,
                        distill_fn: Callable[..., LF.DistillLoss],
                        ce_weight: float = 0.5,
                        kd_weight: float = 0.5,
                        chunk_size: int = 256) -> LF.DistillLoss:
    """CE + (LoCa-)KD of a causal LM over its response tokens.

    Args:
        student_logits (Tensor): (B, T, V) student logits.
        teacher_logits (Tensor): (B, T, V) teacher logits; detached.
        labels (Tensor): (B, T) input token ids with ``IGNORE_INDEX`` at
            prompt and padding positions (not shifted: the shift is done
            here, once).
        distill_fn (Callable): a functional distillation loss with its
            settings bound, e.g. from
            :meth:`LoCaDistillArguments.distill_function`.
        ce_weight (float): weight of the cross-entropy. Defaults to 0.5.
        kd_weight (float): weight of the distillation. Defaults to 0.5.
        chunk_size (int): tokens per chunk. Defaults to 256.

    Returns:
        DistillLoss: the weighted loss, and per position (B * T) the LoCa
        scale, the corrected mask and the mask of scored positions.
    """
    if labels.shape != student_logits.shape[:-1]:
        raise ValueError(f'labels of shape {tuple(labels.shape)} do not fit '
                         f'logits of shape {tuple(student_logits.shape)}')
    return LF.chunked_distill_loss(
        _ce_plus_distill,
        student_logits,
        teacher_logits,
        next_token_labels(labels),
        chunk_size=chunk_size,
        ignore_index=IGNORE_INDEX,
        distill_fn=distill_fn,
        ce_weight=ce_weight,
        kd_weight=kd_weight)


def _logit_width(model: nn.Module) -> int:
    head = model.get_output_embeddings()
    if head is not None:
        return head.weight.shape[0]
    return model.config.vocab_size


def check_shared_vocabulary(student: nn.Module,
                            teacher: nn.Module,
                            tokenizer=None,
                            teacher_tokenizer=None) -> None:
    """Raise ValueError unless teacher and student share one vocabulary.

    LoCa-KD compares the two next-token distributions entry by entry, so
    the logits must have the same width and index the same tokens.

    Args:
        student (nn.Module): the student causal LM.
        teacher (nn.Module): the teacher causal LM.
        tokenizer: the student's tokenizer (the one the data is encoded
            with), optional.
        teacher_tokenizer: the teacher's own tokenizer, optional.
    """
    student_width, teacher_width = _logit_width(student), _logit_width(teacher)
    if student_width != teacher_width:
        raise ValueError(
            'teacher and student must share one vocabulary: the teacher '
            f'predicts {teacher_width} tokens, the student {student_width}. '
            'Distill within one model family that uses one tokenizer.')
    if tokenizer is not None and len(tokenizer) > student_width:
        raise ValueError(
            f'the tokenizer has {len(tokenizer)} tokens but the models '
            f'predict only {student_width}; resize the embeddings of both '
            'models or use the tokenizer they were trained with')
    if tokenizer is None or teacher_tokenizer is None:
        return
    student_vocab = tokenizer.get_vocab()
    teacher_vocab = teacher_tokenizer.get_vocab()
    if student_vocab != teacher_vocab:
        differing = sorted(
            set(student_vocab.items()) ^ set(teacher_vocab.items()))[:3]
        raise ValueError(
            'teacher and student tokenizers differ (student '
            f'{len(student_vocab)} tokens, teacher {len(teacher_vocab)}; '
            f'(token, id) pairs in only one of them include {differing}): '
            'the same id would mean different tokens to the two models')
    for name in ('bos_token_id', 'eos_token_id'):
        if getattr(tokenizer, name) != getattr(teacher_tokenizer, name):
            raise ValueError(
                f'teacher and student tokenizers have different {name}: '
                f'{getattr(teacher_tokenizer, name)} vs '
                f'{getattr(tokenizer, name)}')


class LoCaDistillTrainer(Trainer):
    """Distils a frozen teacher into a student causal LM with (LoCa-)KD.

    Batches need ``labels`` (token ids, ``IGNORE_INDEX`` at prompt and
    padding positions), as ``instruction_data.ResponseOnlyCollator`` makes
    them; the teacher sees the same inputs. Only
    the student is trained, saved and checkpointed. When LoCa is on, each
    training log entry carries ``loca_ratio`` (fraction of response tokens
    whose teacher distribution was corrected since the last log) and
    ``loca_scale`` (their mean scale ``s``).

    Args:
        model (nn.Module): the student causal LM.
        teacher_model (nn.Module): the teacher; put in eval mode, frozen,
            and moved to the training device unless it was loaded with a
            ``device_map``.
        args (LoCaDistillArguments): training and loss settings.
        teacher_processing_class: the teacher's tokenizer, compared with
            ``processing_class`` (the student's) before training.
        **kwargs: everything else ``transformers.Trainer`` takes
            (``train_dataset``, ``data_collator``, ``processing_class``...).
    """

    # compute_loss returns the mean over this micro-batch's response tokens;
    # with gradient accumulation the Trainer divides it by the step count.
    loss_is_scaled_for_ga = False

    def __init__(self,
                 model: nn.Module,
                 teacher_model: nn.Module,
                 args: LoCaDistillArguments,
                 teacher_processing_class=None,
                 **kwargs) -> None:
        if not isinstance(args, LoCaDistillArguments):
            raise TypeError('LoCaDistillTrainer needs LoCaDistillArguments '
                            f'(the loss settings), got {type(args).__name__}')
        check_shared_vocabulary(model, teacher_model,
                                kwargs.get('processing_class'),
                                teacher_processing_class)
        super().__init__(model=model, args=args, **kwargs)
        teacher_model.eval().requires_grad_(False)
        if getattr(teacher_model, 'hf_device_map', None) is None:
            teacher_model.to(self.args.device)
        self.teacher_model = teacher_model
        self.distill_fn = args.distill_function()
        # Sums since the last log: response tokens, corrected tokens, their
        # scales. Kept on the device to avoid a synchronisation per step.
        self._loca_stats: Optional[Tensor] = None

    def response_loss(self, student_logits: Tensor, teacher_logits: Tensor,
                      labels: Tensor) -> LF.DistillLoss:
        """The training loss of given logits: :func:`response_token_loss`."""
        return response_token_loss(
            student_logits,
            teacher_logits,
            labels,
            self.distill_fn,
            ce_weight=self.args.ce_weight,
            kd_weight=self.args.kd_weight,
            chunk_size=self.args.loss_chunk_size)

    def compute_loss(self,
                     model: nn.Module,
                     inputs: dict[str, Tensor],
                     return_outputs: bool = False,
                     num_items_in_batch=None):
        """Run student and teacher on the batch and return the loss."""
        if 'labels' not in inputs:
            raise ValueError(
                'LoCaDistillTrainer needs `labels` in every batch (token ids '
                f'with {IGNORE_INDEX} at prompt and padding positions); got '
                f'keys {sorted(inputs)}')
        model_inputs = {k: v for k, v in inputs.items() if k != 'labels'}
        outputs = model(**model_inputs)
        with torch.no_grad():
            teacher_logits = self.teacher_model(**model_inputs).logits
        result = self.response_loss(outputs.logits, teacher_logits,
                                    inputs['labels'])
        if model.training and self.args.calibrate != 'none':
            self._accumulate_loca_stats(result)
        return (result.loss, outputs) if return_outputs else result.loss

    def _accumulate_loca_stats(self, result: LF.DistillLoss) -> None:
        counts = LF.calibration_counts(result)
        self._loca_stats = counts if self._loca_stats is None else (
            self._loca_stats + counts)

    def log(self,
            logs: dict[str, float],
            start_time: Optional[float] = None) -> None:
        """Add LoCa's correction statistics to training log entries."""
        # Training entries carry 'loss'; evaluation and summary entries
        # ('eval_loss', 'train_loss') do not, and leave the sums alone.
        if 'loss' in logs and self._loca_stats is not None:
            totals = self.accelerator.reduce(self._loca_stats, reduction='sum')
            logs.update(LF.calibration_summary(totals))
            self._loca_stats = None
        super().log(logs, start_time)
