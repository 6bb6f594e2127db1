"""KD (Hinton et al.) and DKD (Zhao et al., CVPR 2022) towards the
LoCa-calibrated teacher, as the papers write them, in plain autograd.

Notation: ``log_p_s = log_softmax(preds_S / tau)`` the student,
``log_p_t`` the teacher likewise, ``log_q`` LoCa's calibration of it
(:func:`loca_rule`; ``calibrate='none'`` leaves the teacher as it is). The
teacher side is detached: only the student gets a gradient. Everything
is in the log domain, so a one-hot teacher, ``-inf`` columns and ``p_t_y``
near 1 stay finite, and autograd gives every order of derivatives.

``standardize=True`` adds Logit Standardization (Sun et al., CVPR 2024) in
front: both rows of logits go through :func:`standardize_logits` before the
temperature, so LoCa calibrates the standardized teacher;
``calibrate='none', standardize=True`` is their KD (or DKD) with LS.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .calibration import check_calibration_args, loca_rule
from .inputs import (batch_mean, check_logits, check_standardize,
                     compute_dtype, kl_rows, log_softmax_rows,
                     prepare_targets)


class DistillLoss(NamedTuple):
    """Result of the distillation losses.

    Attributes:
        loss (Tensor): scalar loss (``tau**2`` included, mean over the
            samples that are not ignored); float32, or float64 when either
            logits tensor is float64.
        scale (Tensor): LoCa's factor ``s`` per flattened sample (M,).
        calibrated (Tensor): bool mask (M,) of the calibrated samples;
            ignored samples are never calibrated.
        valid (Tensor): bool mask (M,) of the samples in the mean.
    """
    loss: Tensor
    scale: Tensor
    calibrated: Tensor
    valid: Tensor


class StudentAndTeacher(NamedTuple):
    """What every loss starts from (see :func:`student_and_teacher`)."""
    log_p_s: Tensor
    log_q: Tensor
    labels: Tensor
    valid: Tensor
    scale: Tensor
    calibrated: Tensor


def student_and_teacher(preds_S: Tensor, preds_T: Tensor, target: Tensor,
                        tau: float, alpha: float, calibrate: str,
                        ignore_index: Optional[int], check_labels: bool,
                        standardize: bool) -> StudentAndTeacher:
    """Check the inputs; the student's and the calibrated teacher's
    log-probabilities as (M, C) rows (of the standardized logits with
    ``standardize``), with the labels and LoCa's details."""
    check_calibration_args(alpha, tau, calibrate)
    check_standardize(standardize)
    check_logits(preds_S, preds_T)
    labels, valid = prepare_targets(preds_S, target, ignore_index,
                                    check_labels)
    dtype = compute_dtype(preds_S, preds_T)
    log_p_t = log_softmax_rows(preds_T.detach(), tau, dtype, standardize)
    log_q, scale, calibrated = loca_rule(log_p_t, labels, alpha, calibrate,
                                         valid)
    log_p_s = log_softmax_rows(preds_S, tau, dtype, standardize)
    return StudentAndTeacher(log_p_s, log_q, labels, valid, scale, calibrated)


def loca_kd_loss(preds_S: Tensor, preds_T: Tensor, target: Tensor,
                 tau: float = 4.0, alpha: float = 0.9,
                 calibrate: str = 'wrong', *,
                 ignore_index: Optional[int] = None,
                 check_labels: bool = True,
                 standardize: bool = False) -> DistillLoss:
    """KD towards the LoCa-calibrated teacher:
    ``tau**2 * mean KL(q || p_s)``; ``calibrate='none'`` is Hinton's KD.

    Args:
        preds_S (Tensor): student logits (..., C).
        preds_T (Tensor): teacher logits (..., C); detached inside.
        target (Tensor): labels (...) or soft labels (..., C).
        tau (float): temperature. Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
            Defaults to ``'wrong'``.
        ignore_index (int, optional): label of samples left out of the mean.
        check_labels (bool): refuse labels outside [0, C) (see
            :func:`prepare_targets`). Defaults to True.
        standardize (bool): standardize each row of student and teacher
            logits first (:func:`standardize_logits`). Defaults to False.

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    dist = student_and_teacher(preds_S, preds_T, target, tau, alpha,
                               calibrate, ignore_index, check_labels,
                               standardize)
    loss = batch_mean(kl_rows(dist.log_q, dist.log_p_s), dist.valid, tau)
    return DistillLoss(loss, dist.scale, dist.calibrated, dist.valid)


def _target_and_rest(log_p: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """DKD's two views of a distribution (M, C), in the log domain: the
    binary ``[p_y, 1 - p_y]`` (M, 2) and the distribution over the
    non-target classes (M, C), the label at ``-inf``."""
    log_non_target = log_p.scatter(-1, index, float('-inf'))
    binary = torch.cat(
        (log_p.gather(-1, index), log_non_target.logsumexp(-1, True)), -1)
    return binary, torch.log_softmax(log_non_target, -1)


def dkd_loss(preds_S: Tensor, preds_T: Tensor, target: Tensor,
             tau: float = 4.0, alpha: float = 0.9, calibrate: str = 'wrong', *,
             tckd_weight: float = 1.0, nckd_weight: float = 8.0,
             ignore_index: Optional[int] = None,
             check_labels: bool = True,
             standardize: bool = False) -> DistillLoss:
    """Decoupled KD on the LoCa-calibrated teacher:
    ``tau**2 * mean(tckd_weight * TCKD + nckd_weight * NCKD)``.

    TCKD is ``KL([q_y, 1 - q_y] || [p_s_y, 1 - p_s_y])``; NCKD the KL
    between teacher and student over the non-target classes. LoCa keeps
    the non-target ratios, so NCKD is the same with or without calibration;
    only TCKD sees the calibrated ``q_y``. ``calibrate='none'`` is plain DKD.

    Args:
        preds_S, preds_T, target, tau, alpha, calibrate: as for
            :func:`loca_kd_loss`.
        tckd_weight (float): weight of TCKD (DKD's alpha). Defaults to 1.0.
        nckd_weight (float): weight of NCKD (DKD's beta). Defaults to 8.0.
        ignore_index, check_labels, standardize: as for
            :func:`loca_kd_loss`.

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    dist = student_and_teacher(preds_S, preds_T, target, tau, alpha,
                               calibrate, ignore_index, check_labels,
                               standardize)
    index = dist.labels.unsqueeze(-1)
    binary_q, non_target_q = _target_and_rest(dist.log_q, index)
    binary_s, non_target_s = _target_and_rest(dist.log_p_s, index)
    per_sample = (tckd_weight * kl_rows(binary_q, binary_s) +
                  nckd_weight * kl_rows(non_target_q, non_target_s))
    loss = batch_mean(per_sample, dist.valid, tau)
    return DistillLoss(loss, dist.scale, dist.calibrated, dist.valid)
