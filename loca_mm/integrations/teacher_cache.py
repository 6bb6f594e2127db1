"""Offline distillation: the teacher runs once, its top-k outputs per
response token are stored, and students train from the file without it.

A cache is a file ``datasets`` reads (``.parquet``, ``.jsonl`` or
``.json``), one row per training record:

* ``input_ids``, ``labels``: the tokenized record (``IGNORE_INDEX`` at
  prompt positions), so the student sees exactly the tokens the teacher saw;
* per response token (each position whose next-token label is scored, in
  order): ``teacher_ids`` and ``teacher_logits`` (its top-k classes and
  their logits), ``teacher_label_logit`` (the label's logit) and
  ``teacher_logsumexp`` (``logsumexp(z / tau)`` of the whole row);
* ``tau``, ``top_k``, ``vocab_size``: the settings it was made with.

The loss is ``functional.sparse_loca_kd_loss`` (label, kept classes and one
rest bucket; see there for LoCa's rule on them).
"""
from __future__ import annotations

import os.path as osp
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from transformers import Trainer

from loca_mm import functional as LF
from .instruction_data import IGNORE_INDEX, ResponseOnlyCollator
from .transformers import (LoCaDistillArguments, LoCaStatsLogMixin,
                           next_token_labels)

#: Columns holding one entry per response token.
TOKEN_COLUMNS = ('teacher_ids', 'teacher_logits', 'teacher_label_logit',
                 'teacher_logsumexp')
CACHE_FORMATS = {'.parquet': 'parquet', '.jsonl': 'json', '.json': 'json'}


@torch.no_grad()
def cache_record(teacher: nn.Module, input_ids: Sequence[int],
                 labels: Sequence[int], top_k: int, tau: float) -> dict:
    """The cache row of one tokenized record (see the module)."""
    device = next(teacher.parameters()).device
    ids = torch.tensor([list(input_ids)], device=device)
    logits = teacher(input_ids=ids).logits[0].float().cpu()
    targets = next_token_labels(torch.tensor(list(labels)))
    scored = targets != IGNORE_INDEX
    logits, targets = logits[scored], targets[scored]
    top_logits, top_ids = logits.topk(min(top_k, logits.shape[-1]), -1)
    return {
        'input_ids': list(input_ids),
        'labels': list(labels),
        'teacher_ids': top_ids.tolist(),
        'teacher_logits': top_logits.tolist(),
        'teacher_label_logit':
        logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).tolist(),
        'teacher_logsumexp': (logits / tau).logsumexp(-1).tolist(),
        'tau': tau,
        'top_k': top_ids.shape[-1],
        'vocab_size': logits.shape[-1],
    }


def _cache_format(path: str) -> str:
    extension = osp.splitext(path)[1].lower()
    if extension not in CACHE_FORMATS:
        raise ValueError(f'teacher cache {path}: expected a file ending in '
                         f'{sorted(CACHE_FORMATS)}')
    return CACHE_FORMATS[extension]


def write_teacher_cache(rows: Sequence[dict], path: str) -> None:
    """Write cache rows to a ``.parquet``, ``.jsonl`` or ``.json`` file."""
    import datasets
    table = datasets.Dataset.from_list(list(rows))
    if _cache_format(path) == 'parquet':
        table.to_parquet(path)
    else:
        table.to_json(path, lines=path.lower().endswith('.jsonl'))


class TeacherCacheDataset(Dataset):
    """The rows of a teacher cache, checked.

    Args:
        path (str): the cache file.
        tau (float): the loss's temperature; it must be the cache's, since
            the stored log-sum-exp is at that temperature.
        vocab_size (int, optional): the student's logits; must be the
            teacher's.

    Attributes:
        top_k (int): classes kept per token.
    """

    def __init__(self, path: str, tau: float,
                 vocab_size: Optional[int] = None) -> None:
        import datasets
        if not osp.isfile(path):
            raise FileNotFoundError(f'teacher cache {path}: no such file')
        table = datasets.load_dataset(
            _cache_format(path), data_files=path, split='train')
        missing = [
            name for name in ('input_ids', 'labels', 'tau', 'top_k',
                              'vocab_size') + TOKEN_COLUMNS
            if name not in table.column_names
        ]
        if missing:
            raise ValueError(f'teacher cache {path} lacks the column(s) '
                             f'{missing}; make it with cache_teacher.py')
        self.rows = table.with_format('python')
        settings = {(row['tau'], row['top_k'], row['vocab_size'])
                    for row in table.select_columns(
                        ['tau', 'top_k', 'vocab_size'])}
        if len(settings) != 1:
            raise ValueError(f'teacher cache {path} mixes settings (tau, '
                             f'top_k, vocab_size) {sorted(settings)}')
        cached_tau, self.top_k, cached_vocab = settings.pop()
        if cached_tau != tau:
            raise ValueError(
                f'teacher cache {path} was made at tau={cached_tau}, the '
                f'loss uses tau={tau}: its log-sum-exp holds at its own '
                'temperature only; cache again or pass --tau '
                f'{cached_tau}')
        if vocab_size is not None and cached_vocab != vocab_size:
            raise ValueError(
                f'teacher cache {path} holds a teacher of {cached_vocab} '
                f'logits, the student predicts {vocab_size}')

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


class TeacherCacheCollator(ResponseOnlyCollator):
    """Pads records as :class:`ResponseOnlyCollator` and stacks the cached
    teacher rows of their response tokens in batch order (row-major, the
    order of the scored positions)."""

    def __call__(self, items: Sequence[dict]) -> dict[str, Tensor]:
        batch = super().__call__(items)
        for name in TOKEN_COLUMNS:
            values = [value for item in items for value in item[name]]
            dtype = torch.long if name == 'teacher_ids' else torch.float32
            batch[name] = torch.tensor(values, dtype=dtype)
        return batch


class LoCaCachedTeacherTrainer(LoCaStatsLogMixin, Trainer):
    """Trains a student from a teacher cache: ``ce_weight * CE + kd_weight
    * sparse LoCa-KD`` over response tokens, normalised as
    :class:`LoCaDistillTrainer` does (``num_items_in_batch``). Forward KL
    only (``distill_loss='kd'``, ``divergence='fkl'``).

    Args:
        model (nn.Module): the student causal LM.
        args (LoCaDistillArguments): training and loss settings.
        **kwargs: what ``transformers.Trainer`` takes (``train_dataset``: a
            :class:`TeacherCacheDataset`, ``data_collator``: a
            :class:`TeacherCacheCollator`).
    """

    def __init__(self, model: nn.Module, args: LoCaDistillArguments,
                 **kwargs) -> None:
        if args.distill_loss != 'kd' or args.divergence != 'fkl':
            raise ValueError(
                'a teacher cache supports forward KL only (distill_loss=kd, '
                f'divergence=fkl), got distill_loss={args.distill_loss!r}, '
                f'divergence={args.divergence!r}')
        super().__init__(model=model, args=args, **kwargs)
        self.model_accepts_loss_kwargs = True
        self._loss_shifts_labels = True
        self._loca_stats = None

    def _set_signature_columns_if_needed(self) -> None:
        # The collator's teacher columns are no model inputs, but the loss's.
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(self._signature_columns) + [
            name for name in TOKEN_COLUMNS
            if name not in self._signature_columns
        ]

    def compute_loss(self,
                     model: nn.Module,
                     inputs: dict[str, Tensor],
                     return_outputs: bool = False,
                     num_items_in_batch=None):
        """The student's loss against the cached teacher."""
        missing = [n for n in ('labels', ) + TOKEN_COLUMNS if n not in inputs]
        if missing:
            raise ValueError(f'a cached-teacher batch needs {missing} (use '
                             'TeacherCacheCollator)')
        teacher = [inputs[name] for name in TOKEN_COLUMNS]
        labels = next_token_labels(inputs['labels'])
        outputs = model(
            input_ids=inputs['input_ids'],
            attention_mask=inputs['attention_mask'],
            use_cache=False)
        scored = labels != IGNORE_INDEX
        if int(scored.sum()) != len(teacher[0]):
            raise ValueError(
                f'the batch scores {int(scored.sum())} tokens but the cache '
                f'holds {len(teacher[0])} for it: the cache does not belong '
                'to these records')
        logits, targets = outputs.logits[scored], labels[scored]
        args = self.args
        result = LF.sparse_loca_kd_loss(
            logits, *teacher, targets, tau=args.tau, alpha=args.alpha,
            calibrate=args.calibrate)
        loss = args.kd_weight * result.loss
        if args.ce_weight:
            # A sum over the count, so that a batch without response
            # tokens gives 0, not NaN.
            loss = loss + args.ce_weight * F.cross_entropy(
                logits.float(), targets,
                reduction='sum') / result.valid.sum().clamp_min(1)
        if model.training and args.calibrate != 'none':
            self._accumulate_loca_stats(result)
        if num_items_in_batch is not None:
            total = torch.as_tensor(num_items_in_batch, device=loss.device)
            loss = loss * (result.valid.sum() / total.clamp_min(1))
        return (loss, outputs) if return_outputs else loss
