"""LoCa's calibration of a teacher distribution (Yang et al., ECAI 2024).

Notation for one sample (a row of logits): ``p`` is the teacher's softened
distribution ``softmax(z_T / tau)``, ``y`` the label, ``k`` the largest
non-target class of ``p``. LoCa replaces ``p`` by

    q_i = s * p_i  (i != y),    q_y = 1 - s * (1 - p_y),
    s = alpha * sigma,          sigma = 1 / (1 - p_y + p_k),

so the non-target ratios (the dark knowledge) are kept, ``q`` sums to one and
the label leads the best non-target class by exactly ``1 - alpha``.

Which samples are calibrated (``calibrate``):

* ``'wrong'``: samples whose label is not the teacher's strict top-1
  (``p_k >= p_y``; a tie counts as wrong). There ``s < 1`` by construction.
  Afterwards the label is the strict top-1 of every sample.
* ``'margin'``: every sample, with ``s = min(alpha * sigma, 1)``; the label
  then leads by at least ``1 - alpha`` everywhere.
* ``'none'``: no calibration, ``q = p`` (plain KD / plain DKD).

Samples that are not calibrated keep ``q = p`` bit for bit (``s = 1``).

The rule as written above is :func:`loca_mm.functional.loca_calibrate` (in
:mod:`.reference`). This module holds what the fused losses need of it per
sample: the factor ``s`` from three probabilities, and the calibration of
log-probabilities in place.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .inputs import _numbers

CALIBRATION_MODES = ('wrong', 'margin', 'none')


class CalibratedTarget(NamedTuple):
    """Result of :func:`loca_mm.functional.loca_calibrate`.

    Attributes:
        probs (Tensor): calibrated distribution ``q``, same shape as the input.
        scale (Tensor): the factor ``s`` per sample (1 where not calibrated).
        calibrated (Tensor): bool mask of the samples that were changed.
    """
    probs: Tensor
    scale: Tensor
    calibrated: Tensor


def check_calibration_args(alpha: float, tau: float, calibrate: str) -> None:
    """Raise ValueError for arguments outside the method's domain.

    Args:
        alpha (float): LoCa's alpha, must lie in the open interval (0, 1).
        tau (float): temperature, must be positive.
        calibrate (str): one of :data:`CALIBRATION_MODES`.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f'LoCa alpha must lie in (0, 1), got {alpha!r}')
    if not tau > 0.0:
        raise ValueError(f'temperature tau must be > 0, got {tau!r}')
    if calibrate not in CALIBRATION_MODES:
        raise ValueError(f'calibrate must be one of {CALIBRATION_MODES}, '
                         f'got {calibrate!r}')


def _uncalibrated(like: Tensor) -> tuple[Tensor, Tensor]:
    """``s = 1`` and an all-False calibrated mask, shaped like ``like``."""
    return torch.ones_like(like), torch.zeros_like(like, dtype=torch.bool)


def calibration_scale(p_y: Tensor, p_k: Tensor, mass_non_target: Tensor,
                      alpha: float, calibrate: str) -> tuple[Tensor, Tensor]:
    """The LoCa factor ``s`` per sample, from three per-sample probabilities.

    Args:
        p_y (Tensor): teacher probability of the label, shape (M,) or (M, 1).
        p_k (Tensor): largest non-target probability, same shape.
        mass_non_target (Tensor): ``1 - p_y``, passed in so that callers can
            compute it without cancellation (from non-target terms, or
            where it is known to be far from 0).
        alpha (float): LoCa's alpha in (0, 1).
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.

    Returns:
        tuple[Tensor, Tensor]: ``s`` (1 exactly where not calibrated) and the
        bool mask of calibrated samples.
    """
    if calibrate == 'none':
        return _uncalibrated(p_y)
    scale, calibrated, _, _ = _loca_row_terms(p_y, p_k, mass_non_target,
                                              alpha, calibrate)
    return scale, calibrated


def _loca_row_terms(p_y: Tensor, p_k: Tensor, mass: Optional[Tensor],
                    alpha: float,
                    calibrate: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What the losses need of LoCa per sample: ``s``, the calibrated mask,
    ``log s`` and ``log q_y``. The arguments as for
    :func:`calibration_scale` (``calibrate`` not ``'none'``), except that
    ``mass`` may be None: then it is ``1 - p_y``, computed here. One
    function for all of it, not a chain: each Python call is a measurable
    share of a loss call at small batches."""
    alpha_operand, one = _numbers(p_y.dtype, alpha, 1.0)
    if mass is None:
        mass = torch.rsub(p_y, one)
    # mass >= p_k, so the denominator is 0 only for a teacher that is one-hot
    # on the label. Such a sample is never calibrated (p_k < p_y, and
    # alpha * inf is not < 1), so where() drops the infinite factor.
    scaled = torch.div(alpha_operand, torch.add(mass, p_k))
    if calibrate == 'wrong':
        calibrated = p_k >= p_y
    else:  # 'margin'
        calibrated = scaled < 1.0
    scale = torch.where(calibrated, scaled, one)
    # q_y = 1 - s * (1 - p_y) written as p_y + (1 - s) * (1 - p_y): a sum of
    # non-negative terms, without cancellation, and p_y itself where s = 1.
    q_y = torch.addcmul(mass, scale, mass, value=-1.0).add_(p_y)
    return scale, calibrated, scale.log(), q_y.log_()


def _loca_log_probs_(log_p: Tensor, index: Tensor, alpha: float,
                     calibrate: str) -> tuple[Tensor, Tensor]:
    """Turn the teacher's log-probabilities (M, C) into LoCa's ``log q``, in
    place; returns ``s`` and the calibrated mask, both (M, 1).

    ``log q_i = log p_i + log s`` off the label, so uncalibrated rows
    (``s = 1``) keep ``log p`` exactly there.
    """
    if calibrate == 'none':
        return _uncalibrated(log_p[:, :1])
    log_p_y = log_p.gather(-1, index)
    # The label column is overwritten with log q_y below; -inf until then
    # keeps it out of the maximum and out of log p + log s.
    log_p_k = log_p.scatter_(-1, index, float('-inf')).amax(-1, keepdim=True)
    # mass = 1 - p_y cancels only where p_y ~ 1, and there the sample is not
    # calibrated: 'wrong' needs 1 - p_y >= p_k >= p_y, 'margin'
    # 1 - p_y > alpha / 2. Uncalibrated samples keep q_y = p_y exactly.
    scale, calibrated, log_scale, log_q_y = _loca_row_terms(
        log_p_y.exp_(), log_p_k.exp_(), None, alpha, calibrate)
    log_p.add_(log_scale).scatter_(-1, index, log_q_y)
    return scale, calibrated
