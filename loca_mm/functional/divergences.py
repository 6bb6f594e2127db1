"""Token-level divergences that language-model distillation compares, each
towards the LoCa-calibrated teacher.

With ``s = softmax(preds_S / tau)`` the student and ``q`` LoCa applied to
``softmax(preds_T / tau)`` (:func:`loca_log_probs`; ``calibrate='none'``
gives the teacher itself), per sample:

* forward KL ``KL(q || s)``: :func:`loca_kd_loss` (closed-form gradient);
* reverse KL ``KL(s || q)``: :func:`reverse_kl_loss`;
* generalized JSD (TRL's GKD): with ``m = (1 - beta) s + beta q``,
  ``beta KL(q || m) + (1 - beta) KL(s || m)``; ``beta = 0`` is forward KL and
  ``beta = 1`` reverse KL, as in TRL (the mixture formula itself would give 0
  there): :func:`generalized_jsd_loss`;
* skew KL (DistiLLM) ``KL(q || skew q + (1 - skew) s)`` and skew reverse KL
  ``KL(s || (1 - skew) q + skew s)``, DistiLLM's default ``skew = 0.1``:
  :func:`skew_kl_loss`, :func:`skew_reverse_kl_loss`. DistiLLM's code drops
  the constant ``sum q log q`` of the skew KL; here it is kept, so that every
  loss is a divergence (0 where the student equals the teacher). The
  gradient is the same.

Every loss is ``tau**2`` times the mean over the samples that are not
ignored, returns :class:`DistillLoss` and takes the arguments of
:func:`loca_kd_loss`. The gradient comes from autograd; only the student
receives one (``q`` is detached).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from .inputs import _log_softmax, _sample_weights, check_logits
from .kd import loca_kd_loss
from .result import DistillLoss
from .teacher import loca_log_probs


def _kl_rows(log_a: Tensor, log_b: Tensor) -> Tensor:
    """``KL(a || b)`` per row of log-probabilities (M, C); entries with
    ``a = 0`` contribute 0 (also to the gradient) even where ``log b`` is
    ``-inf``."""
    a = log_a.exp()
    gap = torch.where(a > 0, log_a - log_b, 0.0)
    return (a * gap).sum(-1)


def _log_mixture(log_a: Tensor, log_b: Tensor, weight_b: float) -> Tensor:
    """``log((1 - weight_b) a + weight_b b)`` from log-probabilities."""
    if weight_b == 0.0:
        return log_a
    if weight_b == 1.0:
        return log_b
    return torch.logaddexp(log_a + math.log1p(-weight_b),
                           log_b + math.log(weight_b))


def _check_fraction(name: str, value: float, high_open: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f'{name} must be a number, got {value!r}')
    ok = 0.0 <= value < 1.0 if high_open else 0.0 <= value <= 1.0
    if not ok:
        interval = '[0, 1)' if high_open else '[0, 1]'
        raise ValueError(f'{name} must lie in {interval}, got {value!r}')


def _divergence_loss(rows_fn: Callable[[Tensor, Tensor],
                                       Tensor], preds_S: Tensor,
                     preds_T: Tensor, target: Tensor, tau: float, alpha: float,
                     calibrate: str, ignore_index: Optional[int],
                     check_range: bool) -> DistillLoss:
    """``tau**2 * mean(rows_fn(log s, log q))`` over the kept samples."""
    check_logits(preds_S, preds_T)
    teacher = loca_log_probs(
        preds_T,
        target,
        tau,
        alpha,
        calibrate,
        ignore_index=ignore_index,
        check_range=check_range)
    log_s = _log_softmax(preds_S, tau)
    log_q = teacher.log_probs.reshape(log_s.shape).to(log_s.dtype)
    per_sample = rows_fn(log_s, log_q).unsqueeze(-1)
    weights = _sample_weights(teacher.valid, ignore_index, tau, log_s.dtype)
    loss = (per_sample * weights).sum()
    return DistillLoss(loss, teacher.scale, teacher.calibrated, teacher.valid)


def reverse_kl_loss(preds_S: Tensor,
                    preds_T: Tensor,
                    target: Tensor,
                    tau: float = 1.0,
                    alpha: float = 0.9,
                    calibrate: str = 'wrong',
                    *,
                    ignore_index: Optional[int] = None,
                    check_range: bool = True) -> DistillLoss:
    """Reverse KL ``tau**2 * mean KL(s || q)`` (mode-seeking, as MiniLLM).

    Args:
        preds_S (Tensor): student logits (..., C).
        preds_T (Tensor): teacher logits (..., C).
        target (Tensor): labels (...) or soft labels (..., C).
        tau (float): temperature. Defaults to 1.0.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
        ignore_index (int, optional): label of samples left out of the mean.
        check_range (bool): validate label values (a GPU synchronisation).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    return _divergence_loss(_kl_rows, preds_S, preds_T, target, tau, alpha,
                            calibrate, ignore_index, check_range)


def generalized_jsd_loss(preds_S: Tensor,
                         preds_T: Tensor,
                         target: Tensor,
                         tau: float = 1.0,
                         alpha: float = 0.9,
                         calibrate: str = 'wrong',
                         *,
                         beta: float = 0.5,
                         ignore_index: Optional[int] = None,
                         check_range: bool = True) -> DistillLoss:
    """Generalized JSD of TRL's GKD trainer, towards the LoCa teacher.

    ``beta KL(q || m) + (1 - beta) KL(s || m)`` with
    ``m = (1 - beta) s + beta q``; ``beta = 0`` is forward KL ``KL(q || s)``
    and ``beta = 1`` reverse KL ``KL(s || q)`` (TRL's special cases).

    Args:
        preds_S, preds_T, target, tau, alpha, calibrate, ignore_index,
        check_range: as for :func:`reverse_kl_loss`.
        beta (float): the interpolation in [0, 1]. Defaults to 0.5
            (TRL's default).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    _check_fraction('beta', beta, high_open=False)

    def rows(log_s: Tensor, log_q: Tensor) -> Tensor:
        if beta == 0.0:
            return _kl_rows(log_q, log_s)
        if beta == 1.0:
            return _kl_rows(log_s, log_q)
        log_m = _log_mixture(log_s, log_q, beta)
        return beta * _kl_rows(log_q, log_m) + (1 - beta) * _kl_rows(
            log_s, log_m)

    return _divergence_loss(rows, preds_S, preds_T, target, tau, alpha,
                            calibrate, ignore_index, check_range)


def skew_kl_loss(preds_S: Tensor,
                 preds_T: Tensor,
                 target: Tensor,
                 tau: float = 1.0,
                 alpha: float = 0.9,
                 calibrate: str = 'wrong',
                 *,
                 skew: float = 0.1,
                 ignore_index: Optional[int] = None,
                 check_range: bool = True) -> DistillLoss:
    """DistiLLM's skew KL ``KL(q || skew q + (1 - skew) s)``.

    Args:
        preds_S, preds_T, target, tau, alpha, calibrate, ignore_index,
        check_range: as for :func:`reverse_kl_loss`.
        skew (float): the teacher's share of the mixture, in [0, 1); 0 is
            forward KL. Defaults to 0.1 (DistiLLM's).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    _check_fraction('skew', skew, high_open=True)
    return _divergence_loss(
        lambda log_s, log_q: _kl_rows(log_q, _log_mixture(log_s, log_q, skew)),
        preds_S, preds_T, target, tau, alpha, calibrate, ignore_index,
        check_range)


def skew_reverse_kl_loss(preds_S: Tensor,
                         preds_T: Tensor,
                         target: Tensor,
                         tau: float = 1.0,
                         alpha: float = 0.9,
                         calibrate: str = 'wrong',
                         *,
                         skew: float = 0.1,
                         ignore_index: Optional[int] = None,
                         check_range: bool = True) -> DistillLoss:
    """DistiLLM's skew reverse KL ``KL(s || (1 - skew) q + skew s)``.

    Args:
        preds_S, preds_T, target, tau, alpha, calibrate, ignore_index,
        check_range: as for :func:`reverse_kl_loss`.
        skew (float): the student's share of the mixture, in [0, 1); 0 is
            reverse KL. Defaults to 0.1 (DistiLLM's).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    _check_fraction('skew', skew, high_open=True)
    return _divergence_loss(
        lambda log_s, log_q: _kl_rows(log_s, _log_mixture(log_q, log_s, skew)),
        preds_S, preds_T, target, tau, alpha, calibrate, ignore_index,
        check_range)


#: The divergences by the names the trainer and ``tools/llm`` use.
DIVERGENCES: dict[str, Callable[..., DistillLoss]] = {
    'fkl': loca_kd_loss,
    'rkl': reverse_kl_loss,
    'jsd': generalized_jsd_loss,
    'skl': skew_kl_loss,
    'srkl': skew_reverse_kl_loss,
}
