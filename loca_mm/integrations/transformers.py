"""LoCa distillation of causal language models on Hugging Face ``Trainer``.

Every response token is one LoCa sample: its "label" is the ground-truth
next token, and the teacher's next-token distribution at that position is
calibrated towards it before the student is pulled to it. The loss per batch
is

    ce_weight * CE + kd_weight * D,

both averaged over response tokens (positions whose label is not
``IGNORE_INDEX``), with D a divergence towards the LoCa teacher
(``distill_loss='kd'``: forward KL as ``functional.loca_kd_loss``, or the
reverse KL, generalized JSD, skew KL or skew reverse KL of
``functional.divergences``, chosen by ``divergence``) or DKD+LoCa of
``functional.dkd_loss`` (``distill_loss='dkd'``); ``calibrate``, ``alpha``
and ``tau`` mean what they mean in ``LoCaLoss``, and ``calibrate='none'``
gives plain KD / DKD.

By default the logits are never materialised: the trainer takes both
models' last hidden states and applies their output layers chunk by chunk
inside the loss (``functional.fused_linear_distill_loss``), on response
tokens only. Models whose logits are not their output layer applied to
their last hidden state fall back, with a logged reason, to materialised
logits and a loss over chunks of tokens (``functional.chunked_distill_loss``).
With gradient accumulation the loss is normalised by the response tokens
of the whole accumulated batch (``num_items_in_batch``).
"""
from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Trainer, TrainingArguments
from transformers.utils import logging

from loca_mm import functional as LF
from .hf_models import check_length_fits
from .instruction_data import IGNORE_INDEX

logger = logging.get_logger(__name__)

DISTILL_LOSSES = ('kd', 'dkd')
DIVERGENCE_NAMES = tuple(LF.DIVERGENCES)

# Config fields of architectures that transform the output layer's logits
# (Gemma 2's soft-capping, Cohere's and Granite's scaling): the fused loss,
# which applies the output layer itself, would miss that step.
LOGIT_TRANSFORMS = ('final_logit_softcapping', 'logit_scale', 'logits_scaling')


@dataclass
class LoCaDistillArguments(TrainingArguments):
    """``TrainingArguments`` plus the distillation loss.

    Defaults follow MiniLLM's KD baseline on Dolly (CE and KD weighted
    0.5/0.5, temperature 1) and LoCa's alpha 0.9.
    """
    distill_loss: str = field(
        default='kd',
        metadata={
            'help':
            "'kd': a divergence (--divergence) towards the LoCa "
            "teacher, forward KL as LoCaLoss by default; 'dkd': DKD on the "
            'LoCa teacher (as DKDLoCaLoss; forward KL only)',
            'choices':
            DISTILL_LOSSES
        })
    divergence: str = field(
        default='fkl',
        metadata={
            'help':
            "with distill_loss=kd: 'fkl' forward KL, 'rkl' reverse "
            "KL, 'jsd' generalized JSD (TRL GKD, --beta), 'skl' / 'srkl' "
            'skew KL / skew reverse KL (DistiLLM, --skew)',
            'choices':
            DIVERGENCE_NAMES
        })
    beta: float = field(
        default=0.5,
        metadata={
            'help':
            'generalized JSD interpolation in [0, 1] (divergence='
            'jsd): 0 is forward KL, 1 reverse KL, as in TRL'
        })
    skew: float = field(
        default=0.1,
        metadata={
            'help':
            'mixture weight in [0, 1) of the skew KLs (divergence='
            "skl|srkl); DistiLLM's default 0.1"
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
    standardize: bool = field(
        default=False,
        metadata={
            'help':
            'Logit Standardization (Sun et al., CVPR 2024): z-score each '
            "row of student and teacher logits before the temperature and "
            'LoCa'
        })
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
        default=1024,
        metadata={
            'help':
            'tokens per chunk of the per-token loss; bounds its '
            'temporary memory to a few (chunk x vocab) buffers'
        })
    loss_block_size: int = field(
        default=128,
        metadata={
            'help':
            'with the fused loss: tokens per block within a chunk, for the '
            "teacher's logits; smaller blocks hold less memory and take "
            'more time'
        })
    fused_loss: bool = field(
        default=True,
        metadata={
            'help':
            'apply the output layers inside the loss, chunk by chunk, on '
            'response tokens only (no full logits); models it cannot '
            'handle fall back to materialised logits with a logged reason'
        })
    compile_loss: bool = field(
        default=False,
        metadata={
            'help':
            "with the fused loss: compile each block's loss and gradient "
            'with torch.compile (the first step pays the compilation)'
        })

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distill_loss not in DISTILL_LOSSES:
            raise ValueError(f'distill_loss must be one of {DISTILL_LOSSES}, '
                             f'got {self.distill_loss!r}')
        if self.divergence not in DIVERGENCE_NAMES:
            raise ValueError(f'divergence must be one of {DIVERGENCE_NAMES}, '
                             f'got {self.divergence!r}')
        if self.distill_loss == 'dkd' and self.divergence != 'fkl':
            raise ValueError(
                f'divergence={self.divergence!r} needs distill_loss=kd: DKD '
                'is a decomposition of the forward KL')
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f'beta must lie in [0, 1], got {self.beta!r}')
        if not 0.0 <= self.skew < 1.0:
            raise ValueError(f'skew must lie in [0, 1), got {self.skew!r}')
        LF.check_calibration_args(self.alpha, self.tau, self.calibrate)
        if self.ce_weight < 0 or self.kd_weight < 0:
            raise ValueError('ce_weight and kd_weight must be >= 0, got '
                             f'{self.ce_weight!r} and {self.kd_weight!r}')
        for name in ('loss_chunk_size', 'loss_block_size'):
            if getattr(self, name) < 1:
                raise ValueError(
                    f'{name} must be >= 1, got {getattr(self, name)!r}')

    def distill_function(self) -> Callable[..., LF.DistillLoss]:
        """The functional distillation loss with this run's settings."""
        common = dict(
            tau=self.tau,
            alpha=self.alpha,
            calibrate=self.calibrate,
            standardize=self.standardize)
        if self.distill_loss == 'kd':
            extra = {
                'jsd': {
                    'beta': self.beta
                },
                'skl': {
                    'skew': self.skew
                },
                'srkl': {
                    'skew': self.skew
                }
            }.get(self.divergence, {})
            return functools.partial(LF.DIVERGENCES[self.divergence], **common,
                                     **extra)
        return functools.partial(
            LF.dkd_loss,
            **common,
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
                     ignore_index: int, check_labels: bool,
                     distill_fn: Callable[..., LF.DistillLoss],
                     ce_weight: float, kd_weight: float) -> LF.DistillLoss:
    """``ce_weight * CE + kd_weight * distill`` for one chunk of tokens."""
    result = distill_fn(
        preds_S,
        preds_T,
        target,
        ignore_index=ignore_index,
        check_labels=check_labels)
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


def fused_response_token_loss(student_hidden: Tensor,
                              student_head: nn.Linear,
                              teacher_hidden: Tensor,
                              teacher_head: nn.Linear,
                              labels: Tensor,
                              distill_fn: Callable[..., LF.DistillLoss],
                              ce_weight: float = 0.5,
                              kd_weight: float = 0.5,
                              chunk_size: int = 1024,
                              block_size: int = 128,
                              num_classes: Optional[int] = None,
                              compile: bool = False) -> LF.DistillLoss:
    """:func:`response_token_loss` from the models' last hidden states.

    The output layers are applied inside the loss, ``chunk_size`` response
    tokens at a time (``functional.fused_linear_distill_loss``): no
    (tokens x vocab) tensor is formed, and prompt and padding positions are
    never projected.

    Args:
        student_hidden (Tensor): (B, T, H_S) input of the student's output
            layer.
        student_head (nn.Linear): the student's output layer.
        teacher_hidden (Tensor): (B, T, H_T), the teacher's; detached.
        teacher_head (nn.Linear): the teacher's output layer.
        labels (Tensor): (B, T) token ids, ``IGNORE_INDEX`` at prompt and
            padding positions (not shifted).
        distill_fn, ce_weight, kd_weight, chunk_size: as for
            :func:`response_token_loss`.
        block_size (int): tokens per block within a chunk (the teacher's
            logits). Defaults to 128.
        num_classes (int, optional): use the output layers' first
            ``num_classes`` rows only (those of the tokenizer's vocabulary,
            when the layers are padded beyond it); default: all rows.
        compile (bool): compile the loss of each block (see
            ``functional.fused_linear_distill_loss``). Defaults to False.

    Returns:
        DistillLoss: as :func:`response_token_loss`.
    """
    if labels.shape != student_hidden.shape[:-1] or \
            labels.shape != teacher_hidden.shape[:-1]:
        raise ValueError(
            f'labels of shape {tuple(labels.shape)} do not fit hidden states '
            f'of shapes {tuple(student_hidden.shape)} (student) and '
            f'{tuple(teacher_hidden.shape)} (teacher)')
    rows = slice(num_classes)  # a view: the weights are not copied
    return LF.fused_linear_distill_loss(
        student_hidden.reshape(-1, student_hidden.shape[-1]),
        student_head.weight[rows],
        teacher_hidden.reshape(-1, teacher_hidden.shape[-1]),
        teacher_head.weight[rows],
        next_token_labels(labels).reshape(-1),
        loss_fn=_ce_plus_distill,
        chunk_size=chunk_size,
        block_size=block_size,
        ignore_index=IGNORE_INDEX,
        student_bias=_rows_of(student_head.bias, rows),
        teacher_bias=_rows_of(teacher_head.bias, rows),
        compile=compile,
        distill_fn=distill_fn,
        ce_weight=ce_weight,
        kd_weight=kd_weight)


def _rows_of(bias: Optional[Tensor], rows: slice) -> Optional[Tensor]:
    return None if bias is None else bias[rows]


def _logit_width(model: nn.Module) -> int:
    head = model.get_output_embeddings()
    if head is not None:
        return head.weight.shape[0]
    return model.config.vocab_size


def check_shared_vocabulary(student: nn.Module,
                            teacher: nn.Module,
                            tokenizer=None,
                            teacher_tokenizer=None) -> int:
    """Raise ValueError unless teacher and student share one vocabulary;
    return the number of logits the loss compares.

    LoCa-KD compares the two next-token distributions entry by entry, so
    the logits must index the same tokens. Output layers of different
    widths (rows padded beyond the vocabulary, as Qwen2.5's 151,936 and
    152,064) are accepted when both tokenizers are given, equal, and within
    both widths: the loss then compares the tokenizer's ``len(tokenizer)``
    logits and leaves the padding rows out.

    Args:
        student (nn.Module): the student causal LM.
        teacher (nn.Module): the teacher causal LM.
        tokenizer: the student's tokenizer (the one the data is encoded
            with), optional.
        teacher_tokenizer: the teacher's own tokenizer, optional.

    Returns:
        int: the output layers' width, or ``len(tokenizer)`` when the
        widths differ.
    """
    widths = {'student': _logit_width(student),
              'teacher': _logit_width(teacher)}
    for role, width in widths.items():
        if tokenizer is not None and len(tokenizer) > width:
            raise ValueError(
                f'the tokenizer has {len(tokenizer)} tokens but the {role} '
                f'predicts only {width}; resize its embeddings or use the '
                'tokenizer it was trained with')
    padded = widths['student'] != widths['teacher']
    if padded and (tokenizer is None or teacher_tokenizer is None):
        raise ValueError(
            'teacher and student must share one vocabulary: the teacher '
            f"predicts {widths['teacher']} tokens, the student "
            f"{widths['student']}. Output layers padded beyond one shared "
            'tokenizer are accepted when both tokenizers are given (to '
            'compare them); otherwise distill within one model family that '
            'uses one tokenizer.')
    if tokenizer is None or teacher_tokenizer is None:
        return widths['student']
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
    return len(tokenizer) if padded else widths['student']


def _base_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a ``peft`` wrapper (or the model)."""
    get_base_model = getattr(model, 'get_base_model', None)
    return get_base_model() if callable(get_base_model) else model


def _takes(model: nn.Module, name: str) -> bool:
    """Whether the model's forward names the argument ``name``."""
    return name in inspect.signature(_base_model(model).forward).parameters


def _is_left_padded(attention_mask: Tensor) -> bool:
    """Whether some row has a padded position before a real token."""
    return bool((attention_mask[:, :-1] < attention_mask[:, 1:]).any())


def _prepare_deepspeed_teacher(teacher: nn.Module, accelerator) -> nn.Module:
    """An inference DeepSpeed engine for the teacher, under the run's config.

    As TRL does for its reference and teacher models: ZeRO-3 shards the
    teacher's weights like the student's (with buckets sized for its hidden
    size); other stages have nothing to shard for a model without
    gradients or optimizer state, so it runs as a plain stage-0 engine.
    """
    import deepspeed
    config = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
    zero = config.setdefault('zero_optimization', {})
    if zero.get('stage') == 3:
        hidden_sizes = getattr(teacher.config, 'hidden_sizes', None)
        hidden = max(hidden_sizes) if hidden_sizes else getattr(
            teacher.config, 'hidden_size', None)
        if hidden is not None:
            zero.update({
                'reduce_bucket_size':
                hidden * hidden,
                'stage3_param_persistence_threshold':
                10 * hidden,
                'stage3_prefetch_bucket_size':
                int(0.9 * hidden * hidden),
            })
    else:
        zero['stage'] = 0
    engine, *_ = deepspeed.initialize(model=teacher, config=config)
    # Not `return engine.eval()`: DeepSpeedEngine.eval returns None.
    engine.eval()
    return engine


class LoCaStatsLogMixin:
    """Adds ``loca_ratio`` and ``loca_scale`` to a ``Trainer``'s training
    log entries, from the results passed to ``_accumulate_loca_stats``
    since the last entry (sums kept on the device, so no synchronisation
    per step; ``self._loca_stats`` starts as None)."""

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


class LoCaDistillTrainer(LoCaStatsLogMixin, Trainer):
    """Distils a frozen teacher into a student causal LM with (LoCa-)KD.

    Batches need ``labels`` (token ids, ``IGNORE_INDEX`` at prompt and
    padding positions), as ``instruction_data.ResponseOnlyCollator`` makes
    them; the teacher sees the same inputs. Position ids are derived from
    ``attention_mask``, so left- and right-padded batches give the same
    loss. Only the student is trained, saved and checkpointed. When LoCa is
    on, each training log entry carries ``loca_ratio`` (fraction of response
    tokens whose teacher distribution was corrected since the last log) and
    ``loca_scale`` (their mean scale ``s``).

    The loss of a micro-batch is its sum over response tokens divided by
    ``num_items_in_batch``, the response tokens of the whole accumulated
    batch (of all processes), as the Trainer counts them: accumulated
    micro-batches of any lengths give the gradient of their concatenation.

    Output layers that differ only in rows beyond the shared tokenizer's
    vocabulary are accepted (both tokenizers given): those rows are left out
    of the logits and of the fused loss's weights, and a warning says so
    once (:func:`check_shared_vocabulary`).

    Args:
        model (nn.Module): the student causal LM (may be a ``peft`` model).
        teacher_model (nn.Module): the teacher; put in eval mode, frozen and
            prepared by accelerate for evaluation (placed on the training
            device unless it was loaded with a ``device_map``; sharded with
            the student under DeepSpeed ZeRO-3).
        args (LoCaDistillArguments): training and loss settings.
        teacher_processing_class: the teacher's tokenizer, compared with
            ``processing_class`` (the student's) before training.
        generation_metrics (dict[str, Callable], optional): metrics of the
            student's generations, each called as ``fn(model, tokenizer)``
            at every evaluation of the eval set (metric prefix ``eval``),
            e.g. ``{'rougeL': RougeLMetric(examples)}``. Their values join
            the evaluation metrics as ``eval_<name>`` before these are
            logged, so the console, reporting backends, ``log_history`` and
            ``metric_for_best_model`` see them.
        **kwargs: everything else ``transformers.Trainer`` takes
            (``train_dataset``, ``data_collator``, ``processing_class``...).

    Attributes:
        fused_off_reason (str | None): why the fused loss is not used (set
            at the first batch), None while it is.
        num_classes (int | None): the logits the loss compares, when the
            output layers are padded to different widths; None: all.
    """

    def __init__(self,
                 model: nn.Module,
                 teacher_model: nn.Module,
                 args: LoCaDistillArguments,
                 teacher_processing_class=None,
                 generation_metrics: Optional[dict[str, Callable]] = None,
                 **kwargs) -> None:
        if not isinstance(args, LoCaDistillArguments):
            raise TypeError('LoCaDistillTrainer needs LoCaDistillArguments '
                            f'(the loss settings), got {type(args).__name__}')
        if generation_metrics and kwargs.get('processing_class') is None:
            raise ValueError('generation_metrics need the tokenizer: pass '
                             'processing_class')
        num_classes = check_shared_vocabulary(model, teacher_model,
                                              kwargs.get('processing_class'),
                                              teacher_processing_class)
        widths = (_logit_width(teacher_model), _logit_width(model))
        self.num_classes = None if widths[0] == widths[1] else num_classes
        if self.num_classes is not None:
            logger.warning(
                "LoCaDistillTrainer: the output layers are padded beyond "
                "the tokenizer's %d tokens (teacher %d rows, student %d); "
                'the loss compares the first %d logits and leaves the '
                'padding rows out', num_classes, *widths, num_classes)
        super().__init__(model=model, args=args, **kwargs)
        # compute_loss normalises by num_items_in_batch itself: the Trainer
        # is to count it (over labels[..., 1:], the positions this loss
        # scores) and not to divide by the accumulation steps again.
        self.model_accepts_loss_kwargs = True
        self._loss_shifts_labels = True
        teacher_model.eval().requires_grad_(False)
        if self.is_deepspeed_enabled:
            self.teacher_model = _prepare_deepspeed_teacher(
                teacher_model, self.accelerator)
        else:
            self.teacher_model = self.accelerator.prepare_model(
                teacher_model, evaluation_mode=True)
        self.distill_fn = args.distill_function()
        self.generation_metrics = dict(generation_metrics or {})
        models = (model, teacher_model)
        self._position_ids = all(_takes(m, 'position_ids') for m in models)
        self._no_cache = all(_takes(m, 'use_cache') for m in models)
        self.fused_off_reason: Optional[str] = None
        self._fused_decided = False
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

    def _unwrapped(self, model: nn.Module) -> nn.Module:
        return _base_model(self.accelerator.unwrap_model(model))

    def _model_inputs(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The models' inputs: the batch without labels, with position ids
        from the attention mask and without a KV cache."""
        model_inputs = {k: v for k, v in inputs.items() if k != 'labels'}
        input_ids = model_inputs.get('input_ids')
        if input_ids is not None:
            check_length_fits(
                input_ids.shape[-1], (self._unwrapped(
                    self.model), self._unwrapped(self.teacher_model)),
                f'a batch of {input_ids.shape[-1]} tokens per row')
        mask = model_inputs.get('attention_mask')
        if mask is not None and 'position_ids' not in model_inputs:
            if self._position_ids:
                # 0, 1, ... from each row's first real token: what the
                # models saw in pre-training, wherever the padding is.
                model_inputs['position_ids'] = mask.long().cumsum(-1).sub_(
                    1).clamp_min_(0)
            elif _is_left_padded(mask):
                raise ValueError(
                    'a left-padded batch, but the models take no '
                    'position_ids: their positions would start in the '
                    'padding. Pad on the right (as ResponseOnlyCollator '
                    'does) or pass position_ids in the batch')
        if self._no_cache:
            model_inputs['use_cache'] = False
        return model_inputs

    def _fused_reason(self, model: nn.Module,
                      model_inputs: dict[str, Tensor]) -> Optional[str]:
        """Why the fused loss cannot reproduce these models' logits, or None.
        """
        if not self.args.fused_loss:
            return 'fused_loss=False'
        if self.is_deepspeed_enabled and getattr(
                self.accelerator.state.deepspeed_plugin, 'zero_stage',
                None) == 3:
            return "DeepSpeed ZeRO-3 partitions the output layers' weights"
        if self.is_fsdp_enabled:
            return "FSDP shards the output layers' weights"
        roles = (('student', self._unwrapped(model)),
                 ('teacher', self._unwrapped(self.teacher_model)))
        for role, unwrapped in roles:
            head = unwrapped.get_output_embeddings()
            # The exact class: a subclass may change what forward computes.
            if type(head) is not nn.Linear:
                return (f"the {role}'s output layer is "
                        f'{type(head).__name__}, not a torch.nn.Linear')
            for name in LOGIT_TRANSFORMS:
                value = getattr(unwrapped.config, name, None)
                if value is not None:
                    return (f"the {role}'s config sets {name}={value!r}: "
                            "its logits are not its output layer's")
        if not _takes(self._unwrapped(model), 'logits_to_keep'):
            return "the student's forward takes no logits_to_keep"
        return self._fused_mismatch(model, model_inputs)

    def _student_hidden(self, model: nn.Module, model_inputs: dict[str,
                                                                   Tensor]):
        """The student's last hidden state and outputs. Through the
        (possibly wrapped) model, so that DDP sees the forward; logits are
        formed for one position per row only."""
        outputs = model(
            **model_inputs, output_hidden_states=True, logits_to_keep=1)
        return outputs.hidden_states[-1], outputs

    def _teacher_hidden(self, model_inputs: dict[str, Tensor]) -> Tensor:
        """The teacher's last hidden state, from its decoder alone (no
        hidden states of the other layers kept)."""
        decoder = self._unwrapped(self.teacher_model).get_decoder()
        return decoder(**model_inputs).last_hidden_state

    @torch.no_grad()
    def _fused_mismatch(self, model: nn.Module,
                        model_inputs: dict[str, Tensor]) -> Optional[str]:
        """Compare, on one row of the first batch, each model's logits with
        its output layer applied to the hidden state the fused loss uses."""
        row = {
            k: v[:1] if isinstance(v, Tensor) else v
            for k, v in model_inputs.items()
        }
        was_training = model.training
        model.eval()  # dropout off: the two passes must agree
        try:
            student_logits = model(**row).logits
            student_hidden, _ = self._student_hidden(model, row)
        finally:
            model.train(was_training)
        student_head = self._unwrapped(model).get_output_embeddings()
        teacher_head = self._unwrapped(
            self.teacher_model).get_output_embeddings()
        pairs = (('student', student_logits, student_head(student_hidden)),
                 ('teacher', self.teacher_model(**row).logits,
                  teacher_head(self._teacher_hidden(row))))
        for role, logits, projected in pairs:
            if logits.shape != projected.shape:
                return (f"the {role}'s logits {tuple(logits.shape)} are not "
                        'its output layer applied to its last hidden state '
                        f'{tuple(projected.shape)}')
            tolerance = 1e-4 if logits.dtype == torch.float32 else 1e-2
            logits, projected = logits.float(), projected.float()
            gap = (logits - projected).abs().max().item()
            if not gap <= tolerance * (1 + logits.abs().max().item()):
                return (f"the {role}'s logits are not its output layer "
                        'applied to its last hidden state (largest '
                        f'difference {gap:.3g})')
        return None

    def _use_fused(self, model: nn.Module, model_inputs: dict[str,
                                                              Tensor]) -> bool:
        if not self._fused_decided:
            self.fused_off_reason = self._fused_reason(model, model_inputs)
            self._fused_decided = True
            if self.fused_off_reason is not None:
                logger.warning(
                    'LoCaDistillTrainer: the fused loss is off (%s); '
                    'computing the loss on materialised logits',
                    self.fused_off_reason)
        return self.fused_off_reason is None

    def compute_loss(self,
                     model: nn.Module,
                     inputs: dict[str, Tensor],
                     return_outputs: bool = False,
                     num_items_in_batch=None):
        """Run student and teacher on the batch and return the loss.

        With ``return_outputs`` (evaluation) the student's logits are
        materialised, as callers of the outputs expect them.
        """
        if 'labels' not in inputs:
            raise ValueError(
                'LoCaDistillTrainer needs `labels` in every batch (token ids '
                f'with {IGNORE_INDEX} at prompt and padding positions); got '
                f'keys {sorted(inputs)}')
        labels = inputs['labels']
        model_inputs = self._model_inputs(inputs)
        if not return_outputs and self._use_fused(model, model_inputs):
            student_hidden, outputs = self._student_hidden(model, model_inputs)
            with torch.no_grad():
                teacher_hidden = self._teacher_hidden(model_inputs)
            result = fused_response_token_loss(
                student_hidden,
                self._unwrapped(model).get_output_embeddings(),
                teacher_hidden,
                self._unwrapped(self.teacher_model).get_output_embeddings(),
                labels,
                self.distill_fn,
                ce_weight=self.args.ce_weight,
                kd_weight=self.args.kd_weight,
                chunk_size=self.args.loss_chunk_size,
                block_size=self.args.loss_block_size,
                num_classes=self.num_classes,
                compile=self.args.compile_loss)
        else:
            outputs = model(**model_inputs)
            with torch.no_grad():
                teacher_logits = self.teacher_model(**model_inputs).logits
            rows = slice(self.num_classes)
            result = self.response_loss(outputs.logits[..., rows],
                                        teacher_logits[..., rows], labels)
        if model.training and self.args.calibrate != 'none':
            self._accumulate_loca_stats(result)
        loss = result.loss
        if num_items_in_batch is not None:
            # The micro-batch's mean -> its sum over the accumulated batch's
            # response tokens (all processes' when they are averaged).
            total = torch.as_tensor(num_items_in_batch, device=loss.device)
            loss = loss * (result.valid.sum() / total.clamp_min(1))
            if self.args.average_tokens_across_devices:
                # DDP averages the processes' gradients while the count is
                # their sum: undo the average, as Trainer.compute_loss does.
                loss = loss * (
                    self.accelerator.num_processes // self.get_tp_size())
        return (loss, outputs) if return_outputs else loss

    def evaluation_loop(self,
                        dataloader,
                        description: str,
                        prediction_loss_only: Optional[bool] = None,
                        ignore_keys: Optional[list[str]] = None,
                        metric_key_prefix: str = 'eval'):
        """``Trainer.evaluation_loop`` plus the generation metrics, so that
        ``evaluate`` logs and reports them with the loss."""
        output = super().evaluation_loop(dataloader, description,
                                         prediction_loss_only, ignore_keys,
                                         metric_key_prefix)
        if metric_key_prefix == 'eval':
            for name, metric in self.generation_metrics.items():
                output.metrics[f'eval_{name}'] = metric(
                    self.model, self.processing_class)
        return output
