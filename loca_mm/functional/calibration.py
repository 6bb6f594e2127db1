"""LoCa's calibration of a teacher distribution (Yang et al., ECAI 2024).

For one sample (a row) with teacher distribution ``p_t``, label ``y`` and
``k`` its largest non-target class, LoCa replaces ``p_t`` by

    q_i = s * p_t_i  (i != y),    q_y = 1 - s * (1 - p_t_y),
    s = alpha / (1 - p_t_y + p_t_k),

so the non-target ratios (the dark knowledge) are kept, ``q`` sums to one
and the label leads the best non-target class by exactly ``1 - alpha``.

Which samples are calibrated (``calibrate``):

* ``'wrong'``: those whose label is not the teacher's strict top-1
  (``p_t_k >= p_t_y``; a tie counts as wrong). There ``s < 1``.
* ``'margin'``: every sample with ``s < 1``; the label then leads by at
  least ``1 - alpha`` everywhere.
* ``'none'``: none (plain KD / DKD).

Samples that are not calibrated keep ``q = p_t`` (``s = 1``).
:func:`loca_rule` is the rule, once, in the log domain; everything else here
and every loss calls it.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .inputs import (check_standardize, compute_dtype, log_softmax_rows,
                     prepare_targets)

CALIBRATION_MODES = ('wrong', 'margin', 'none')


def check_calibration_args(alpha: float, tau: float, calibrate: str) -> None:
    """Raise ValueError for arguments outside the method's domain.

    Args:
        alpha (float): LoCa's alpha, in the open interval (0, 1).
        tau (float): temperature, > 0.
        calibrate (str): one of :data:`CALIBRATION_MODES`.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f'LoCa alpha must lie in (0, 1), got {alpha!r}')
    if not tau > 0.0:
        raise ValueError(f'temperature tau must be > 0, got {tau!r}')
    if calibrate not in CALIBRATION_MODES:
        raise ValueError(f'calibrate must be one of {CALIBRATION_MODES}, '
                         f'got {calibrate!r}')


def loca_rule(log_p_t: Tensor,
              labels: Tensor,
              alpha: float,
              calibrate: str,
              valid: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """LoCa's rule on rows of teacher log-probabilities.

    In the log domain, ``log q_i = log p_t_i + log s`` off the label, so a
    one-hot teacher, ``-inf`` columns and ``p_t_y`` near 1 stay finite.
    Elementwise operations and row reductions only, which
    ``torch.compile`` fuses into the loss around it.

    Args:
        log_p_t (Tensor): teacher log-probabilities (M, C).
        labels (Tensor): labels (M,) in [0, C).
        alpha (float): LoCa's alpha in (0, 1).
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
        valid (Tensor, optional): bool (M,); other samples stay as they are.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``log q`` (M, C), ``s`` (M,) and the
        bool mask (M,) of calibrated samples.
    """
    if calibrate == 'none':
        return (log_p_t, log_p_t.new_ones(labels.shape),
                torch.zeros_like(labels, dtype=torch.bool))
    classes = torch.arange(log_p_t.shape[-1], device=log_p_t.device)
    label = classes == labels.unsqueeze(-1)
    log_p_y = log_p_t.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    log_p_k = torch.where(label, float('-inf'), log_p_t).amax(-1)
    # 1 - p_t_y cancels only where p_t_y is near 1, and such a sample is
    # never calibrated: 'wrong' needs p_t_y <= p_t_k <= 1 - p_t_y, 'margin'
    # 1 - p_t_y > alpha / 2.
    log_mass = torch.log1p(-log_p_y.exp())
    # log s = log alpha - log(1 - p_t_y + p_t_k); +inf only for a teacher
    # one-hot on the label, which is never calibrated.
    log_scale = math.log(alpha) - torch.logaddexp(log_mass, log_p_k)
    if calibrate == 'wrong':
        calibrated = log_p_k >= log_p_y
    else:  # 'margin'
        calibrated = log_scale < 0
    if valid is not None:
        calibrated = calibrated & valid
    log_scale = torch.where(calibrated, log_scale, 0.0)
    scale = log_scale.exp()
    # q_y = p_t_y + (1 - s) * (1 - p_t_y): non-negative terms, and exactly
    # p_t_y where s = 1 (log(1 - 1) = -inf).
    log_q_y = torch.logaddexp(log_p_y, torch.log1p(-scale) + log_mass)
    log_q = torch.where(label, log_q_y.unsqueeze(-1),
                        log_p_t + log_scale.unsqueeze(-1))
    return log_q, scale, calibrated


class CalibratedTarget(NamedTuple):
    """Result of :func:`loca_calibrate`.

    Attributes:
        probs (Tensor): calibrated distribution ``q``, shape of the input.
        scale (Tensor): the factor ``s`` per sample (1 where not calibrated).
        calibrated (Tensor): bool mask of the samples that were changed.
    """
    probs: Tensor
    scale: Tensor
    calibrated: Tensor


def loca_calibrate(probs: Tensor,
                   target: Tensor,
                   alpha: float = 0.9,
                   calibrate: str = 'wrong') -> CalibratedTarget:
    """LoCa's rule on teacher probabilities (M, C); uncalibrated rows keep
    ``q = p_t`` exactly.

    Args:
        probs (Tensor): teacher probabilities (M, C), rows sum to 1.
        target (Tensor): integer labels (M,) in [0, C).
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
            Defaults to ``'wrong'``.

    Returns:
        CalibratedTarget: ``q``, ``s`` and the calibrated mask.
    """
    check_calibration_args(alpha, 1.0, calibrate)
    log_q, scale, calibrated = loca_rule(probs.log(), target.long(), alpha,
                                         calibrate)
    q = torch.where(calibrated.unsqueeze(-1), log_q.exp(), probs)
    return CalibratedTarget(q, scale, calibrated)


class CalibratedLogProbs(NamedTuple):
    """Result of :func:`loca_log_probs`.

    Attributes:
        log_probs (Tensor): ``log q``, shape of the teacher logits, float32
            (float64 for float64 logits); ignored samples keep ``log p_t``.
        scale (Tensor): LoCa's factor ``s`` per flattened sample (M,).
        calibrated (Tensor): bool mask (M,) of the calibrated samples.
        valid (Tensor): bool mask (M,) of the samples that are not ignored.
    """
    log_probs: Tensor
    scale: Tensor
    calibrated: Tensor
    valid: Tensor


def loca_log_probs(preds_T: Tensor, target: Tensor, tau: float = 4.0,
                   alpha: float = 0.9, calibrate: str = 'wrong', *,
                   ignore_index: Optional[int] = None,
                   check_labels: bool = True,
                   standardize: bool = False) -> CalibratedLogProbs:
    """``log q`` of LoCa applied to ``softmax(preds_T / tau)``, detached:
    the calibrated teacher for any divergence.

    Args:
        preds_T (Tensor): teacher logits (..., C).
        target (Tensor): labels (...) or soft labels (..., C).
        tau (float): temperature. Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
        ignore_index (int, optional): label of samples left uncalibrated.
        check_labels (bool): refuse labels outside [0, C) (see
            :func:`prepare_targets`).
        standardize (bool): calibrate the teacher of the standardized
            logits (:func:`standardize_logits`), ``softmax(std(preds_T) /
            tau)``. Defaults to False.

    Returns:
        CalibratedLogProbs: ``log q`` and the per-sample details.
    """
    check_calibration_args(alpha, tau, calibrate)
    check_standardize(standardize)
    labels, valid = prepare_targets(preds_T, target, ignore_index,
                                    check_labels)
    log_p_t = log_softmax_rows(preds_T.detach(), tau, compute_dtype(preds_T),
                               standardize)
    log_q, scale, calibrated = loca_rule(log_p_t, labels, alpha, calibrate,
                                         valid)
    return CalibratedLogProbs(
        log_q.view(preds_T.shape), scale, calibrated, valid)


class CalibratedLogits(NamedTuple):
    """Result of :func:`loca_calibrated_logits`: as
    :class:`CalibratedLogProbs`, with ``logits = tau * log q``."""
    logits: Tensor
    scale: Tensor
    calibrated: Tensor
    valid: Tensor


def loca_calibrated_logits(preds_T: Tensor, target: Tensor, tau: float = 4.0,
                           alpha: float = 0.9, calibrate: str = 'wrong',
                           ignore_index: Optional[int] = None, *,
                           check_labels: bool = True,
                           standardize: bool = False) -> CalibratedLogits:
    """Teacher logits whose softened distribution is LoCa's ``q``:
    ``softmax(z' / tau) == q``, so any loss that softens the teacher at
    ``tau`` sees the calibrated teacher. ``z' = tau * log q``, finite where
    ``q > 0``. At another temperature ``t`` a loss would see
    ``q ** (tau / t)`` renormalised, which is neither LoCa at ``t`` nor ``q``.

    The arguments are those of :func:`loca_log_probs`.
    """
    log_q, scale, calibrated, valid = loca_log_probs(
        preds_T,
        target,
        tau,
        alpha,
        calibrate,
        ignore_index=ignore_index,
        check_labels=check_labels,
        standardize=standardize)
    return CalibratedLogits(tau * log_q, scale, calibrated, valid)
