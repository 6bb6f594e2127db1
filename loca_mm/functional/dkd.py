"""Decoupled KD (Zhao et al., CVPR 2022) on the LoCa-calibrated teacher,
with its closed-form student gradient."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .calibration import (_loca_row_terms, _uncalibrated,
                          check_calibration_args)
from .inputs import (_as_rows, _checked_targets, _compute_dtype, _grad_factor,
                     _kl_terms_, _number, _refuse_labels, _sample_weights)
from .result import DistillLoss, _distill_result

# Stands in for the label's logit in the softmax over non-target classes:
# exp() turns it into an exact 0, and unlike -inf it cancels to 0 (not NaN)
# where student and teacher log-probabilities are subtracted.
_EXCLUDED_LOGIT = torch.finfo(torch.float32).min


def _loca_binary_(log_binary_T: Tensor, binary_logits_T: Tensor,
                  alpha: float, calibrate: str) -> tuple[Tensor, Tensor, Tensor]:
    """LoCa on the teacher's [target, non-target] log-probabilities (M, 2).

    ``binary_logits_T`` are the logits they are the log-softmax of,
    ``[z_y - z_k, log-sum-exp of the non-targets - z_k]`` with ``z_k`` the
    largest non-target logit. Returns the calibrated log-probabilities,
    ``s`` and the calibrated mask.
    """
    if calibrate == 'none':
        return (log_binary_T, *_uncalibrated(log_binary_T[:, :1]))
    # log p_k = log p_y - (z_y - z_k), so that a tie between the label and
    # another class compares equal (and is calibrated as defined); for a
    # label masked with -inf that is -inf + inf, and fmax takes the other
    # way, log p_nt + log p'_k.
    log_p_k = torch.fmax(*(log_binary_T - binary_logits_T).split(1, -1))
    p_y, mass = log_binary_T.exp().split(1, -1)
    scale, calibrated, log_scale, log_q_y = _loca_row_terms(
        p_y, log_p_k.exp_(), mass, alpha, calibrate)
    return (torch.cat((log_q_y, log_binary_T[:, 1:] + log_scale),
                      -1), scale, calibrated)


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
    """Decoupled KD (Zhao et al., CVPR 2022), optionally on a LoCa teacher.

    ``loss = tau**2 * mean(tckd_weight * TCKD + nckd_weight * NCKD)`` (DKD's
    alpha and beta). TCKD is the KL
    between the binary distributions ``[p_y, 1 - p_y]`` of teacher and
    student; NCKD the KL between their distributions over the non-target
    classes. LoCa keeps the ratios among non-target classes, so NCKD is the
    same with or without calibration; only TCKD sees the calibrated ``q_y``.

    Both parts come from the softmax over the non-target classes and the
    two log-sum-exps of each row, so a teacher that is (numerically) one-hot
    on the label gives finite values. The student gradient has a closed
    form, per sample and w.r.t. ``z_S = preds_S / tau``: at the label
    ``a * (s_y - q_y)``, elsewhere
    ``s'_i * (a * (s_nt - q_nt) + b) - b * p'_i`` (``a``, ``b`` the TCKD and
    NCKD weights), with ``'`` the
    non-target softmaxes and ``_nt`` the non-target masses. It is computed
    here, with the loss, and attached without an autograd graph.

    Args:
        preds_S (Tensor): student logits (..., C).
        preds_T (Tensor): teacher logits (..., C).
        target (Tensor): labels (...) or soft labels (..., C).
        tau (float): temperature. Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'`` (plain
            DKD). Defaults to ``'wrong'``.
        tckd_weight (float): weight of TCKD (DKD's alpha). Defaults to 1.0.
        nckd_weight (float): weight of NCKD (DKD's beta). Defaults to 8.0.
        ignore_index (int, optional): label of samples left out of the mean.
        check_range (bool): refuse labels outside [0, C) (see
            :func:`prepare_targets`; on CPU the loss's own gather finds
            them, at no cost while they are fine).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    check_calibration_args(alpha, tau, calibrate)
    labels, valid = _checked_targets(preds_S, preds_T, target, ignore_index,
                                     check_range, gathers_labels=True)
    needs_grad = preds_S.requires_grad and torch.is_grad_enabled()
    num_classes = preds_S.shape[-1]
    dtype = _compute_dtype(preds_S, preds_T)
    with torch.no_grad():
        weights = _sample_weights(valid, ignore_index, tau, dtype)
        # Student (0) and teacher (1) stacked: every step below is one
        # operator call for both, which is what costs at small N x C.
        logits = torch.stack((_as_rows(preds_S, dtype),
                              _as_rows(preds_T, dtype)))
        if tau != 1.0:
            logits.div_(_number(tau, dtype))
        index = labels.unsqueeze(-1)
        # One index for both: expand prepends the stacked dimension.
        both = index.expand(2, -1, -1)
        try:
            logit_y = logits.gather(-1, both)
        except RuntimeError as error:  # it checks the labels
            _refuse_labels(error, preds_S, target, labels, ignore_index,
                           check_range)
        log_nt = logits.scatter_(-1, both, _EXCLUDED_LOGIT).log_softmax(-1)
        # [target, non-target] logits relative to the largest non-target
        # logit z_k: [z_y - z_k, log-sum-exp of the non-targets - z_k], the
        # latter minus z_k's log-share of the non-target softmax.
        top_logit = logits.amax(-1, keepdim=True)
        binary_logits = torch.cat(
            (logit_y - top_logit, log_nt.amax(-1, keepdim=True).neg_()), -1)
        del logits
        log_binary_S, log_binary_T = binary_logits.log_softmax(-1)
        log_q_binary, scale, calibrated = _loca_binary_(
            log_binary_T, binary_logits[1], alpha, calibrate)
        q_binary = log_q_binary.exp()
        tckd = _kl_terms_(log_q_binary - log_binary_S, q_binary)
        log_nt_S, log_nt_T = log_nt
        teacher_nt = log_nt_T.exp()  # p'
        nckd = _kl_terms_(log_nt_T.sub_(log_nt_S), teacher_nt)
        # Per-sample weights weight each term; a number, the sum once.
        sum_weight = weights
        if isinstance(weights, Tensor):
            tckd.mul_(weights)
            nckd.mul_(weights)
            sum_weight = 1.0
        loss = tckd.sum()
        # Multiplying by 1 (DKD's usual TCKD weight) changes nothing.
        if tckd_weight != 1.0:
            loss = loss.mul_(tckd_weight)
        loss = loss.add_(nckd.sum(), alpha=nckd_weight)
        if sum_weight != 1.0:
            loss = loss.mul_(_number(sum_weight, dtype))
        if needs_grad:
            student_nt = log_nt_S.exp_()  # s'
            gap_y, gap_non_target = log_binary_S.exp().sub_(q_binary).split(
                1, -1)
            # weights / tau folded into the coefficients (numbers, unless
            # samples can be ignored). Built in the buffer of p': log_nt's
            # (2, M, C) buffer is freed on return, and only this (M, C)
            # one is kept for backward.
            nckd_step = _grad_factor(weights, tau, dtype, nckd_weight)
            tckd_step = _grad_factor(weights, tau, dtype, tckd_weight)
            grad = teacher_nt.mul_(
                _grad_factor(weights, tau, dtype, -nckd_weight))
            grad.addcmul_(student_nt,
                          gap_non_target.mul(tckd_step).add_(nckd_step))
            grad.scatter_(-1, index, gap_y.mul_(tckd_step))

    def student_gradient(logits: Tensor) -> Tensor:
        # The gradient above without its teacher-only term -b * p'.
        logits = logits.reshape(-1, num_classes).to(dtype) / tau
        student_y = logits.log_softmax(-1).gather(-1, index).exp()
        student_nt = logits.scatter(-1, index, _EXCLUDED_LOGIT).softmax(-1)
        gap_non_target = (1.0 - student_y) - q_binary[:, 1:]
        part = student_nt * (tckd_weight * gap_non_target + nckd_weight)
        part = part.scatter(-1, index, tckd_weight * student_y)
        return part * (weights / tau)

    return _distill_result(preds_S, loss, grad if needs_grad else None, scale,
                           calibrated, valid, ignore_index, student_gradient,
                           'dkd_loss')

