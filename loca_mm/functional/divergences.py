"""Token-level divergences that language-model distillation compares, each
towards the LoCa-calibrated teacher ``q`` (``calibrate='none'``: the teacher
itself), with ``p_s`` the student at temperature ``tau``:

* ``'fkl'`` forward KL ``KL(q || p_s)``: :func:`loca_kd_loss`;
* ``'rkl'`` reverse KL ``KL(p_s || q)`` (MiniLLM): :func:`reverse_kl_loss`;
* ``'jsd'`` generalized JSD (TRL's GKD), with ``m = (1 - beta) p_s + beta q``,
  ``beta KL(q || m) + (1 - beta) KL(p_s || m)``; ``beta = 0`` is forward
  and ``beta = 1`` reverse KL, as in TRL: :func:`generalized_jsd_loss`;
* ``'skl'`` skew KL ``KL(q || skew q + (1 - skew) p_s)`` and ``'srkl'`` skew
  reverse KL ``KL(p_s || (1 - skew) q + skew p_s)`` (DistiLLM, default
  ``skew = 0.1``): :func:`skew_kl_loss`, :func:`skew_reverse_kl_loss`.
  DistiLLM drops the constant ``sum q log q`` of the skew KL; it is kept
  here so that every loss is a divergence (0 where ``p_s = q``).

Every loss takes ``(preds_S, preds_T, target, tau, alpha, calibrate, *,
<its parameter>, ignore_index, check_labels, standardize)``, is ``tau**2``
times the mean over the samples that are not ignored, and returns
:class:`DistillLoss`. ``standardize=True`` compares the distributions of the
standardized logits (Logit Standardization, see :mod:`.losses`).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from .inputs import batch_mean, kl_rows
from .losses import DistillLoss, loca_kd_loss, student_and_teacher


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
    if not (0.0 <= value < 1.0 if high_open else 0.0 <= value <= 1.0):
        interval = '[0, 1)' if high_open else '[0, 1]'
        raise ValueError(f'{name} must lie in {interval}, got {value!r}')


def _divergence(rows: Callable[[Tensor, Tensor], Tensor], preds_S: Tensor,
                preds_T: Tensor, target: Tensor, tau: float, alpha: float,
                calibrate: str, ignore_index: Optional[int],
                check_labels: bool, standardize: bool) -> DistillLoss:
    """``tau**2 * mean(rows(log_p_s, log_q))`` over the kept samples."""
    dist = student_and_teacher(preds_S, preds_T, target, tau, alpha,
                               calibrate, ignore_index, check_labels,
                               standardize)
    loss = batch_mean(rows(dist.log_p_s, dist.log_q), dist.valid, tau)
    return DistillLoss(loss, dist.scale, dist.calibrated, dist.valid)


def reverse_kl_loss(preds_S: Tensor, preds_T: Tensor, target: Tensor,
                    tau: float = 1.0, alpha: float = 0.9,
                    calibrate: str = 'wrong', *,
                    ignore_index: Optional[int] = None,
                    check_labels: bool = True,
                    standardize: bool = False) -> DistillLoss:
    """Reverse KL ``tau**2 * mean KL(p_s || q)`` (mode-seeking, as MiniLLM);
    the arguments as for :func:`loca_kd_loss` (``tau`` defaults to 1)."""
    return _divergence(kl_rows, preds_S, preds_T, target, tau, alpha,
                       calibrate, ignore_index, check_labels, standardize)


def generalized_jsd_loss(preds_S: Tensor, preds_T: Tensor, target: Tensor,
                         tau: float = 1.0, alpha: float = 0.9,
                         calibrate: str = 'wrong', *, beta: float = 0.5,
                         ignore_index: Optional[int] = None,
                         check_labels: bool = True,
                         standardize: bool = False) -> DistillLoss:
    """Generalized JSD of TRL's GKD trainer towards the LoCa teacher;
    ``beta`` in [0, 1] (TRL's default 0.5), the other arguments as for
    :func:`reverse_kl_loss`."""
    _check_fraction('beta', beta, high_open=False)

    def rows(log_p_s: Tensor, log_q: Tensor) -> Tensor:
        if beta == 0.0:
            return kl_rows(log_q, log_p_s)
        if beta == 1.0:
            return kl_rows(log_p_s, log_q)
        log_m = _log_mixture(log_p_s, log_q, beta)
        return (beta * kl_rows(log_q, log_m) +
                (1 - beta) * kl_rows(log_p_s, log_m))

    return _divergence(rows, preds_S, preds_T, target, tau, alpha, calibrate,
                       ignore_index, check_labels, standardize)


def _skew_rows(skew: float, reverse: bool) -> Callable:
    """DistiLLM's per-row skew KL ``KL(q || skew q + (1 - skew) p_s)``, or
    with ``reverse`` ``KL(p_s || (1 - skew) q + skew p_s)``."""
    _check_fraction('skew', skew, high_open=True)

    def rows(log_p_s: Tensor, log_q: Tensor) -> Tensor:
        log_a, log_b = (log_p_s, log_q) if reverse else (log_q, log_p_s)
        return kl_rows(log_a, _log_mixture(log_b, log_a, skew))

    return rows


def skew_kl_loss(preds_S: Tensor, preds_T: Tensor, target: Tensor,
                 tau: float = 1.0, alpha: float = 0.9,
                 calibrate: str = 'wrong', *, skew: float = 0.1,
                 ignore_index: Optional[int] = None,
                 check_labels: bool = True,
                 standardize: bool = False) -> DistillLoss:
    """DistiLLM's skew KL ``KL(q || skew q + (1 - skew) p_s)``; ``skew`` in
    [0, 1) is the teacher's share (0: forward KL), the other arguments as
    for :func:`reverse_kl_loss`."""
    return _divergence(_skew_rows(skew, reverse=False), preds_S, preds_T,
                       target, tau, alpha, calibrate, ignore_index,
                       check_labels, standardize)


def skew_reverse_kl_loss(preds_S: Tensor, preds_T: Tensor, target: Tensor,
                         tau: float = 1.0, alpha: float = 0.9,
                         calibrate: str = 'wrong', *, skew: float = 0.1,
                         ignore_index: Optional[int] = None,
                         check_labels: bool = True,
                         standardize: bool = False) -> DistillLoss:
    """DistiLLM's skew reverse KL ``KL(p_s || (1 - skew) q + skew p_s)``;
    ``skew`` in [0, 1) is the student's share (0: reverse KL), the other
    arguments as for :func:`reverse_kl_loss`."""
    return _divergence(_skew_rows(skew, reverse=True), preds_S, preds_T,
                       target, tau, alpha, calibrate, ignore_index,
                       check_labels, standardize)


#: The divergences by the names the trainer and ``tools/llm`` use.
DIVERGENCES: dict[str, Callable[..., DistillLoss]] = {
    'fkl': loca_kd_loss,
    'rkl': reverse_kl_loss,
    'jsd': generalized_jsd_loss,
    'skl': skew_kl_loss,
    'srkl': skew_reverse_kl_loss,
}
