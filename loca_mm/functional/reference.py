"""LoCa, KD and DKD as the papers write them: the oracle for the fast code.

Plain autograd, one short function per formula, every distribution
materialised: ``p = softmax(z_T / tau)``, LoCa's ``q`` (Yang et al., ECAI
2024), ``KL(q || softmax(z_S / tau))`` and DKD's split of it into the
target/non-target part (TCKD) and the part over the non-target classes
(NCKD, Zhao et al., CVPR 2022). :func:`loca_kd_loss` and :func:`dkd_loss`
take the arguments of, and mean exactly what, the fused losses of
:mod:`.kd` and :mod:`.dkd` mean; the tests hold the fused losses, their
closed-form gradients and second derivatives equal to these.

Use them to read the method, to check a change, or where plain autograd is
wanted (any order of derivatives). The fused losses are what to train with:
faster, and fewer (samples x classes) buffers.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .calibration import CalibratedTarget, check_calibration_args
from .inputs import _checked_targets, _compute_dtype
from .result import DistillLoss


def loca_calibrate(probs: Tensor,
                   target: Tensor,
                   alpha: float = 0.9,
                   calibrate: str = 'wrong') -> CalibratedTarget:
    """LoCa's rule on teacher distributions.

    ``q_i = s * p_i`` off the label, ``q_y = 1 - s * (1 - p_y)``, with
    ``s = alpha / (1 - p_y + p_k)`` where a sample is calibrated, else
    ``s = 1`` (``q = p`` bit for bit).

    Args:
        probs (Tensor): teacher probabilities, shape (M, C), rows sum to 1.
        target (Tensor): integer labels, shape (M,), in [0, C).
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): which samples to change: ``'wrong'`` (the label is
            not the strict top-1), ``'margin'`` (all, ``s <= 1``) or
            ``'none'``. Defaults to ``'wrong'``.

    Returns:
        CalibratedTarget: ``q``, ``s`` and the calibrated mask.
    """
    check_calibration_args(alpha, 1.0, calibrate)
    label = F.one_hot(target.long(), probs.shape[-1]).bool()
    p_y = probs[label]
    non_target = probs.masked_fill(label, 0.0)
    p_k = non_target.amax(-1)
    # 1 - p_y as the sum of the non-target probabilities: no cancellation.
    sigma = 1.0 / (non_target.sum(-1) + p_k)
    if calibrate == 'wrong':
        calibrated = p_k >= p_y
    elif calibrate == 'margin':
        calibrated = alpha * sigma < 1.0
    else:
        calibrated = torch.zeros_like(p_y, dtype=torch.bool)
    s = torch.where(calibrated, alpha * sigma, 1.0)
    q_y = torch.where(calibrated, 1.0 - s * non_target.sum(-1), p_y)
    q = torch.where(label, q_y.unsqueeze(-1), s.unsqueeze(-1) * probs)
    return CalibratedTarget(q, s, calibrated)


def kl_div(q: Tensor, log_p: Tensor) -> Tensor:
    """``KL(q || p)`` per row, from ``q`` and ``log p``; classes with
    ``q = 0`` add nothing (also where ``p = 0``)."""
    terms = q * (q.log() - log_p)
    return torch.where(q == 0, 0.0, terms).sum(-1)


def _flat(preds: Tensor, dtype: torch.dtype) -> Tensor:
    return preds.reshape(-1, preds.shape[-1]).to(dtype)


def _mean(per_sample: Tensor, valid: Tensor, tau: float) -> Tensor:
    """``tau**2`` times the mean over the valid samples."""
    kept = per_sample * valid  # NaN of an ignored sample stays visible
    return tau**2 * kept.sum() / valid.sum().clamp_min(1)


def _teacher(preds_T: Tensor, labels: Tensor, valid: Tensor, tau: float,
             alpha: float, calibrate: str,
             dtype: torch.dtype) -> CalibratedTarget:
    """LoCa's ``q`` of ``softmax(preds_T / tau)``, detached."""
    p = torch.softmax(_flat(preds_T.detach(), dtype) / tau, -1)
    q, s, calibrated = loca_calibrate(p, labels, alpha, calibrate)
    return CalibratedTarget(q, s, calibrated & valid)


def loca_kd_loss(preds_S: Tensor,
                 preds_T: Tensor,
                 target: Tensor,
                 tau: float = 4.0,
                 alpha: float = 0.9,
                 calibrate: str = 'wrong',
                 *,
                 ignore_index: Optional[int] = None,
                 check_range: bool = True) -> DistillLoss:
    """``tau**2 * mean KL(q || softmax(preds_S / tau))``; the arguments as
    for :func:`loca_mm.functional.loca_kd_loss`."""
    check_calibration_args(alpha, tau, calibrate)
    labels, valid = _checked_targets(preds_S, preds_T, target, ignore_index,
                                     check_range)
    dtype = _compute_dtype(preds_S, preds_T)
    q, s, calibrated = _teacher(preds_T, labels, valid, tau, alpha, calibrate,
                                dtype)
    log_student = F.log_softmax(_flat(preds_S, dtype) / tau, -1)
    loss = _mean(kl_div(q, log_student), valid, tau)
    return DistillLoss(loss, s, calibrated, valid)


def dkd_loss(preds_S: Tensor,
             preds_T: Tensor,
             target: Tensor,
             tau: float = 4.0,
             alpha: float = 0.9,
             calibrate: str = 'wrong',
             *,
             tckd_weight: float = 1.0,
             nckd_weight: float = 8.0,
             ignore_index: Optional[int] = None,
             check_range: bool = True) -> DistillLoss:
    """``tau**2 * mean(tckd_weight * TCKD + nckd_weight * NCKD)`` of the
    LoCa teacher ``q``; the arguments as for
    :func:`loca_mm.functional.dkd_loss`.

    TCKD is ``KL([q_y, 1 - q_y] || [s_y, 1 - s_y])``; NCKD the KL between
    ``q`` and ``s`` renormalised over the non-target classes (for ``q`` the
    teacher's own ``p'``: LoCa keeps the non-target ratios).
    """
    check_calibration_args(alpha, tau, calibrate)
    labels, valid = _checked_targets(preds_S, preds_T, target, ignore_index,
                                     check_range)
    dtype = _compute_dtype(preds_S, preds_T)
    q, s, calibrated = _teacher(preds_T, labels, valid, tau, alpha, calibrate,
                                dtype)
    label = F.one_hot(labels, q.shape[-1]).bool()
    q_y, q_non_target = q[label], q.masked_fill(label, 0.0)
    tckd_teacher = torch.stack((q_y, q_non_target.sum(-1)), -1)
    nckd_teacher = q_non_target / q_non_target.sum(-1, keepdim=True)
    # The student in the log domain: log 0 = -inf where it has no mass.
    log_student = F.log_softmax(_flat(preds_S, dtype) / tau, -1)
    log_student_nt = log_student.masked_fill(label, float('-inf'))
    log_tckd_student = torch.stack(
        (log_student[label], log_student_nt.logsumexp(-1)), -1)
    log_nckd_student = F.log_softmax(log_student_nt, -1)
    per_sample = (tckd_weight * kl_div(tckd_teacher, log_tckd_student) +
                  nckd_weight * kl_div(nckd_teacher, log_nckd_student))
    return DistillLoss(_mean(per_sample, valid, tau), s, calibrated, valid)
