"""LoCa-KD towards a sparse (cached) teacher: its top-k classes plus one
"rest" bucket, for offline distillation.

A cached teacher keeps, per sample, the logits of its ``k`` largest classes
and their ids, the label's logit and the log-sum-exp of the whole row at the
temperature ``tau``. From these the teacher is exact on ``k + 2`` buckets:
the label, the kept non-label classes, and the rest (all other classes, one
bucket holding ``1 - sum(kept)``). The student is compared on the same
buckets: its log-probabilities of the kept ids, and the log of its own mass
outside them.

LoCa's rule (:func:`loca_rule`) is exact on these buckets:

* ``p_y`` is kept (the label has its own column);
* ``p_k``, the largest non-target probability among **all** classes, is the
  largest kept non-label class: with ``k >= 2`` top classes kept, either the
  label is among them and the next ones are the largest non-targets, or it is
  not and the top-1 is. So ``k >= 2`` is required;
* the rest bucket is never ``k`` (it is a sum of classes, not a class): the
  rule runs on the kept columns only, and the rest bucket, non-target, is
  scaled by ``s`` like every non-target class (``q_rest = s * p_rest``).

With every class kept (``k`` = vocabulary) the rest bucket is empty and the
loss equals :func:`loca_kd_loss` on the full teacher.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .calibration import check_calibration_args, loca_rule
from .inputs import batch_mean, compute_dtype, kl_rows, prepare_targets
from .losses import DistillLoss


def _check_sparse_teacher(preds_S: Tensor, teacher_ids: Tensor,
                          teacher_logits: Tensor, teacher_label_logit: Tensor,
                          teacher_logsumexp: Tensor) -> None:
    rows = tuple(preds_S.shape[:-1])
    if teacher_ids.shape != teacher_logits.shape or \
            tuple(teacher_ids.shape[:-1]) != rows:
        raise ValueError(
            f'teacher_ids {tuple(teacher_ids.shape)} and teacher_logits '
            f'{tuple(teacher_logits.shape)} must both be {rows + ("k", )} '
            f'for student logits {tuple(preds_S.shape)}')
    if teacher_ids.shape[-1] < 2:
        raise ValueError(
            f'a sparse teacher needs k >= 2 kept classes per sample (the '
            f'largest non-target class must be kept), got k = '
            f'{teacher_ids.shape[-1]}')
    for name, tensor in (('teacher_label_logit', teacher_label_logit),
                         ('teacher_logsumexp', teacher_logsumexp)):
        if tuple(tensor.shape) != rows:
            raise ValueError(f'{name} must have shape {rows}, got '
                             f'{tuple(tensor.shape)}')
    if teacher_ids.is_floating_point():
        raise ValueError(f'teacher_ids must be integer class ids, got '
                         f'{teacher_ids.dtype}')


def _log1mexp(log_x: Tensor) -> Tensor:
    """``log(1 - x)`` from ``log x``; ``-inf`` where rounding made
    ``x >= 1``."""
    return torch.log1p(-log_x.clamp_max(0.0).exp())


def sparse_loca_kd_loss(preds_S: Tensor,
                        teacher_ids: Tensor,
                        teacher_logits: Tensor,
                        teacher_label_logit: Tensor,
                        teacher_logsumexp: Tensor,
                        target: Tensor,
                        tau: float = 4.0,
                        alpha: float = 0.9,
                        calibrate: str = 'wrong',
                        *,
                        ignore_index: Optional[int] = None,
                        check_labels: bool = True) -> DistillLoss:
    """KD towards the LoCa-calibrated sparse teacher:
    ``tau**2 * mean KL(q || p_s)`` over the buckets label, kept classes and
    rest (see the module for the rule).

    Args:
        preds_S (Tensor): student logits (..., C).
        teacher_ids (Tensor): ids (..., k) of the teacher's kept classes
            (its top-k), distinct per sample, ``k >= 2``. The label may be
            among them or not.
        teacher_logits (Tensor): the teacher's logits (..., k) of those ids,
            at temperature 1.
        teacher_label_logit (Tensor): the teacher's logit (...) of the
            label, at temperature 1.
        teacher_logsumexp (Tensor): ``logsumexp(z / tau)`` (...) of the
            teacher's whole row of logits ``z``, at this loss's ``tau``.
        target (Tensor): labels (...).
        tau (float): temperature. Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
            Defaults to ``'wrong'``.
        ignore_index (int, optional): label of samples left out of the mean.
        check_labels (bool): refuse labels outside [0, C).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    check_calibration_args(alpha, tau, calibrate)
    _check_sparse_teacher(preds_S, teacher_ids, teacher_logits,
                          teacher_label_logit, teacher_logsumexp)
    labels, valid = prepare_targets(preds_S, target, ignore_index,
                                    check_labels)
    num_classes = preds_S.shape[-1]
    dtype = compute_dtype(preds_S, teacher_logits)
    ids = teacher_ids.reshape(-1, teacher_ids.shape[-1]).long()
    # Column 0 is the label; a kept id equal to the label is masked out of
    # the other columns, so every class is counted once.
    columns = torch.cat((labels.unsqueeze(-1), ids), -1)
    duplicate = torch.cat(
        (torch.zeros_like(labels, dtype=torch.bool).unsqueeze(-1),
         ids == labels.unsqueeze(-1)), -1)

    logits_T = torch.cat(
        (teacher_label_logit.reshape(-1, 1),
         teacher_logits.reshape(-1, ids.shape[-1])), -1).detach().to(dtype)
    log_p_t = (logits_T / tau -
               teacher_logsumexp.reshape(-1, 1).detach().to(dtype))
    log_p_t = log_p_t.masked_fill(duplicate, float('-inf'))
    log_q, scale, calibrated = loca_rule(log_p_t, torch.zeros_like(labels),
                                         alpha, calibrate, valid)

    rows_S = preds_S.reshape(-1, num_classes).to(dtype)
    log_p_s_all = torch.log_softmax(rows_S if tau == 1.0 else rows_S / tau, -1)
    kept = torch.zeros_like(log_p_s_all, dtype=torch.bool).scatter_(
        -1, columns, True)
    has_rest = ~kept.all(-1, keepdim=True)
    # The student's mass outside the kept classes, exactly (a logsumexp of
    # its other classes); rows without a rest bucket get -inf through a
    # where that keeps the gradient finite.
    outside = log_p_s_all.masked_fill(kept | ~has_rest, 0.0)
    outside = outside.masked_fill(kept & has_rest, float('-inf'))
    log_rest_s = torch.where(has_rest, outside.logsumexp(-1, keepdim=True),
                             float('-inf'))
    log_p_s = torch.where(duplicate, float('-inf'),
                          log_p_s_all.gather(-1, columns))

    # The rest bucket is non-target: s times the teacher's remaining mass.
    log_rest_t = _log1mexp(log_p_t.logsumexp(-1, keepdim=True))
    log_rest_q = torch.where(has_rest, log_rest_t + scale.log().unsqueeze(-1),
                             float('-inf'))
    per_sample = kl_rows(
        torch.cat((log_q, log_rest_q), -1), torch.cat((log_p_s, log_rest_s),
                                                      -1))
    loss = batch_mean(per_sample, valid, tau)
    return DistillLoss(loss, scale, calibrated, valid)
