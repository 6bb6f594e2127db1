"""Hinton's KD towards the LoCa-calibrated teacher, with its closed-form
student gradient."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .calibration import _loca_log_probs_, check_calibration_args
from .inputs import (_checked_targets, _compute_dtype, _log_softmax,
                     _log_softmaxes, _refuse_labels, _sample_weights,
                     _weight_factors)
from .result import DistillLoss, _distill_result

_INF = float('inf')


def loca_kd_loss(preds_S: Tensor,
                 preds_T: Tensor,
                 target: Tensor,
                 tau: float = 4.0,
                 alpha: float = 0.9,
                 calibrate: str = 'wrong',
                 *,
                 ignore_index: Optional[int] = None,
                 check_range: bool = True) -> DistillLoss:
    """KD towards the LoCa-calibrated teacher: ``tau**2 * mean KL(q || s)``.

    ``s = softmax(preds_S / tau)``; ``q`` is LoCa applied to
    ``softmax(preds_T / tau)`` and is detached. With ``calibrate='none'``
    this is Hinton's KD.

    ``q`` is built in the log domain, ``log q = log p + log s`` off the
    label, so ``KL = sum q (log q - log s)`` needs no ``0 * log 0`` guard.
    The student gradient has the closed form ``tau * (softmax(z_S) - q)``
    per sample (``z_S = preds_S / tau``); it is computed here, with the loss,
    and attached without an autograd graph.

    Args:
        preds_S (Tensor): student logits (..., C).
        preds_T (Tensor): teacher logits (..., C).
        target (Tensor): labels (...) or soft labels (..., C).
        tau (float): temperature. Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
        ignore_index (int, optional): label of samples left out of the mean.
        check_range (bool): refuse labels outside [0, C) (see
            :func:`prepare_targets`; on CPU the loss's own gather finds
            them, at no cost while they are fine).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    check_calibration_args(alpha, tau, calibrate)
    labels, valid = _checked_targets(preds_S, preds_T, target, ignore_index,
                                     check_range, calibrate != 'none')
    needs_grad = preds_S.requires_grad and torch.is_grad_enabled()
    # No autograd inside (the inputs are detached): a traced version records
    # ~15 graph nodes whose overhead dominates at small N x C, and keeps
    # more (M, C) buffers for backward. The loss also runs on (tokens x
    # vocab) logits, so each (M, C) buffer is reused in place once it has
    # served.
    index = labels.unsqueeze(-1)
    dtype = _compute_dtype(preds_S, preds_T)
    weights = _sample_weights(valid, ignore_index, tau, dtype)
    sum_factor, grad_factor = _weight_factors(weights, tau, dtype)
    log_s, log_q = _log_softmaxes(tau, dtype, preds_S.detach(),
                                  preds_T.detach())
    try:
        scale, calibrated = _loca_log_probs_(log_q, index, alpha, calibrate)
    except RuntimeError as error:  # its gather checks the labels
        _refuse_labels(error, preds_S, target, labels, ignore_index,
                       check_range)
    q = log_q.exp()
    # q log(q / s) must be 0 where q is 0 (a class masked with -inf):
    # log q - log s is NaN (-inf - -inf) or -inf there, and +inf only where
    # the student has no mass but the teacher has (loss +inf). In place, so
    # without a mask the size of the logits.
    kl_terms = log_q.sub_(log_s).nan_to_num_(0.0, _INF, 0.0).mul_(q)
    # Per-sample weights weight each term; a number, the sum once.
    loss = (kl_terms.mul_(weights).sum()
            if sum_factor is None else kl_terms.sum().mul_(sum_factor))
    # That also zeroed the NaN of a student holding NaN (a teacher's stays,
    # in q); it must not become a finite loss. The maximum of log_s is
    # finite (<= 0) unless log_s holds NaN, so adding it times 0 changes
    # nothing else (an empty batch has no maximum, nor NaN).
    if log_s.numel():
        loss = loss.add_(log_s.amax(), alpha=0.0)
    del log_q
    if needs_grad:
        grad = log_s.exp_().sub_(q).mul_(grad_factor)

    def student_gradient(logits: Tensor) -> Tensor:
        return _log_softmax(logits, tau, dtype).exp().mul(weights / tau)

    return _distill_result(preds_S, loss, grad if needs_grad else None, scale,
                           calibrated, valid, ignore_index, student_gradient,
                           'loca_kd_loss')
