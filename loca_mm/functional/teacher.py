"""The LoCa-calibrated teacher as log-probabilities or as logits: the
building blocks for putting LoCa in front of any divergence or logit loss."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .calibration import _loca_log_probs_, check_calibration_args
from .inputs import _log_softmax, prepare_targets


class CalibratedLogProbs(NamedTuple):
    """Result of :func:`loca_log_probs`.

    Attributes:
        log_probs (Tensor): ``log q``, float32 (computed in float32 for
            every input dtype), shape of the teacher logits; ignored samples
            keep ``log p``.
        scale (Tensor): LoCa factor ``s`` per flattened sample, shape (M,).
        calibrated (Tensor): bool mask (M,) of the calibrated samples.
        valid (Tensor): bool mask (M,) of the samples that are not ignored.
    """
    log_probs: Tensor
    scale: Tensor
    calibrated: Tensor
    valid: Tensor


def loca_log_probs(preds_T: Tensor,
                   target: Tensor,
                   tau: float = 4.0,
                   alpha: float = 0.9,
                   calibrate: str = 'wrong',
                   *,
                   ignore_index: Optional[int] = None,
                   check_range: bool = True) -> CalibratedLogProbs:
    """``log q`` of LoCa applied to ``softmax(preds_T / tau)``, detached.

    Computed in the log domain (``log q_i = log p_i + log s`` off the
    label), so ``q_i = 0`` is never needed as ``log 0`` of a rounded
    product.

    Args:
        preds_T (Tensor): teacher logits (..., C).
        target (Tensor): labels (...) or soft labels (..., C).
        tau (float): temperature. Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
        ignore_index (int, optional): label of samples left uncalibrated.
        check_range (bool): validate label values (a GPU synchronisation).

    Returns:
        CalibratedLogProbs: ``log q`` and the per-sample details.
    """
    check_calibration_args(alpha, tau, calibrate)
    labels, valid = prepare_targets(preds_T, target, ignore_index,
                                    check_range)
    with torch.no_grad():
        log_q = _log_softmax(preds_T, tau)
        log_p = log_q.clone() if ignore_index is not None else None
        scale, calibrated = _loca_log_probs_(log_q, labels.unsqueeze(-1),
                                             alpha, calibrate)
        scale, calibrated = scale.view(-1), calibrated.view(-1)
        if log_p is not None:
            log_q = torch.where(valid.unsqueeze(-1), log_q, log_p)
            scale = torch.where(valid, scale, 1.0)
            calibrated = calibrated & valid
    return CalibratedLogProbs(log_q.view(preds_T.shape), scale, calibrated,
                              valid)


class CalibratedLogits(NamedTuple):
    """Result of :func:`loca_calibrated_logits`.

    Attributes:
        logits (Tensor): teacher logits ``z' = tau * log q``, detached,
            float32 like :attr:`CalibratedLogProbs.log_probs`, shape of the
            teacher logits; ignored samples get ``tau * log p``, which softmax maps
            back to ``p``.
        scale (Tensor): LoCa factor ``s`` per flattened sample, shape (M,).
        calibrated (Tensor): bool mask (M,) of the calibrated samples.
        valid (Tensor): bool mask (M,) of the samples that are not ignored.
    """
    logits: Tensor
    scale: Tensor
    calibrated: Tensor
    valid: Tensor


def loca_calibrated_logits(preds_T: Tensor,
                           target: Tensor,
                           tau: float = 4.0,
                           alpha: float = 0.9,
                           calibrate: str = 'wrong',
                           ignore_index: Optional[int] = None,
                           *,
                           check_range: bool = True) -> CalibratedLogits:
    """Teacher logits whose softened distribution is LoCa's ``q``.

    ``softmax(z' / tau) == loca_calibrate(softmax(preds_T / tau))``: any
    loss that softens the teacher's logits at ``tau`` then sees the
    calibrated teacher. ``z' = tau * log q`` is one choice of the per-row
    constant that softmax ignores; it is finite wherever ``q > 0`` (``log q``
    comes from :func:`loca_log_probs`, in the log domain).

    The identity holds only at the same ``tau``: at another temperature
    ``t`` a loss sees ``q ** (tau / t)`` renormalized, which is neither LoCa
    at ``t`` nor ``q``.

    Args:
        preds_T (Tensor): teacher logits (..., C).
        target (Tensor): labels (...) or soft labels (..., C).
        tau (float): temperature the consuming loss softens with.
            Defaults to 4.0.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
        ignore_index (int, optional): label of samples left uncalibrated.
        check_range (bool): validate label values (a GPU synchronisation).

    Returns:
        CalibratedLogits: ``z'`` and the per-sample details.
    """
    log_q, scale, calibrated, valid = loca_log_probs(
        preds_T,
        target,
        tau,
        alpha,
        calibrate,
        ignore_index=ignore_index,
        check_range=check_range)
    return CalibratedLogits(log_q.mul_(tau), scale, calibrated, valid)
