"""The LoCa-calibrated teacher distribution as log-probabilities: the
building block for putting LoCa in front of any divergence."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .calibration import _loca_log_probs_, check_calibration_args
from .inputs import _log_softmax, prepare_targets


class CalibratedLogProbs(NamedTuple):
    """Result of :func:`loca_log_probs`.

    Attributes:
        log_probs (Tensor): ``log q``, float32 (float64 for float64 input),
            shape of the teacher logits; ignored samples keep ``log p``.
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
