"""LoCa calibration and the distillation losses built on it, in plain PyTorch.

This module imports only torch, so it serves any training loop (mmengine,
Hugging Face, Lightning, a hand-written one). The mmrazor losses in
:mod:`loca_mm.models.losses` are thin adapters around it.

Notation for one sample (a row of logits): ``p`` is the teacher's softened
distribution ``softmax(z_T / tau)``, ``y`` the label, ``k`` the largest
non-target class of ``p``. LoCa (Yang et al., ECAI 2024) replaces ``p`` by

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
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

CALIBRATION_MODES = ('wrong', 'margin', 'none')


class CalibratedTarget(NamedTuple):
    """Result of :func:`loca_calibrate`.

    Attributes:
        probs (Tensor): calibrated distribution ``q``, same shape as the input.
        scale (Tensor): the factor ``s`` per sample (1 where not calibrated).
        calibrated (Tensor): bool mask of the samples that were changed.
    """
    probs: Tensor
    scale: Tensor
    calibrated: Tensor


class DistillLoss(NamedTuple):
    """Result of :func:`loca_kd_loss` and :func:`dkd_loss`.

    Attributes:
        loss (Tensor): scalar loss (``tau**2`` included, batch mean over the
            samples that are not ignored).
        scale (Tensor): LoCa factor ``s`` per flattened sample, shape (M,).
        calibrated (Tensor): bool mask (M,) of the calibrated samples; ignored
            samples are never counted as calibrated.
        valid (Tensor): bool mask (M,) of the samples that entered the mean.
    """
    loss: Tensor
    scale: Tensor
    calibrated: Tensor
    valid: Tensor


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
    # mass_non_target >= p_k, so the denominator is 0 only for a teacher that
    # is one-hot on the label. Such a sample is never calibrated (p_k < p_y,
    # and alpha * inf is not < 1), so where() drops the infinite factor.
    scaled = (mass_non_target + p_k).reciprocal_().mul_(alpha)
    if calibrate == 'wrong':
        calibrated = p_k >= p_y
    else:  # 'margin'
        calibrated = scaled < 1.0
    return torch.where(calibrated, scaled, 1.0), calibrated


def loca_calibrate(probs: Tensor,
                   target: Tensor,
                   alpha: float = 0.9,
                   calibrate: str = 'wrong') -> CalibratedTarget:
    """Calibrate a batch of teacher distributions with LoCa.

    Args:
        probs (Tensor): teacher probabilities, shape (M, C), rows sum to 1.
        target (Tensor): integer labels, shape (M,), in [0, C).
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): which samples to change. Defaults to ``'wrong'``.

    Returns:
        CalibratedTarget: ``q``, ``s`` and the calibrated mask.
    """
    check_calibration_args(alpha, 1.0, calibrate)
    index = target.long().unsqueeze(-1)
    p_y = probs.gather(-1, index).squeeze(-1)
    non_target = probs.scatter(-1, index, 0.0)
    p_k = non_target.amax(-1)
    scale, calibrated = calibration_scale(p_y, p_k, non_target.sum(-1), alpha,
                                          calibrate)
    # x * 1.0 == x exactly, so untouched rows stay bit-identical to p.
    q = probs * scale.unsqueeze(-1)
    q_y = torch.where(calibrated, 1.0 - scale * non_target.sum(-1), p_y)
    return CalibratedTarget(q.scatter(-1, index, q_y.unsqueeze(-1)), scale,
                            calibrated)


def prepare_targets(logits: Tensor,
                    target: Tensor,
                    ignore_index: Optional[int] = None,
                    check_range: bool = True) -> tuple[Tensor, Tensor]:
    """Flatten labels to (M,) and mark the samples that enter the loss.

    Soft labels (the same shape as the logits, as Mixup/CutMix produce) are
    reduced to their argmax: LoCa needs one class to promote, and the
    dominant mixed class is the one the soft cross-entropy pulls hardest.

    Args:
        logits (Tensor): logits of shape (..., C).
        target (Tensor): hard labels of shape (...) with an integer dtype, or
            soft labels of shape (..., C) with a floating dtype.
        ignore_index (int, optional): label value to leave out of the mean.
        check_range (bool): raise for labels outside [0, C) that are not
            ``ignore_index``. This reads a value back from the device (a
            synchronisation on GPU); turn it off in hot loops you trust.

    Returns:
        tuple[Tensor, Tensor]: labels (M,) with ignored entries set to 0, and
        the bool mask (M,) of kept samples.
    """
    num_classes = logits.shape[-1]
    if target.shape == logits.shape and target.is_floating_point():
        labels = target.argmax(-1)
    elif target.shape == logits.shape[:-1] and not (
            target.is_floating_point() or target.is_complex()
            or target.dtype == torch.bool):
        labels = target.long()
    else:
        raise ValueError(
            f'labels of shape {tuple(target.shape)} and dtype {target.dtype} '
            f'do not fit logits of shape {tuple(logits.shape)}: expected '
            f'integer labels of shape {tuple(logits.shape[:-1])} or soft '
            f'labels of shape {tuple(logits.shape)}')
    labels = labels.reshape(-1)
    if ignore_index is None:
        valid = torch.ones_like(labels, dtype=torch.bool)
    else:
        valid = labels != ignore_index
        labels = labels * valid  # ignored samples point at class 0
    if check_range and labels.numel():
        # Both extremes in one read-back: a single synchronisation on GPU.
        low, high = torch.stack(torch.aminmax(labels)).tolist()
        if low < 0 or high >= num_classes:
            raise ValueError(
                f'label {low if low < 0 else high} is outside '
                f'[0, {num_classes}) and is not ignore_index ({ignore_index})')
    return labels, valid


def check_logits(preds_S: Tensor, preds_T: Tensor) -> None:
    """Raise ValueError unless student and teacher logits can be compared."""
    if preds_S.shape != preds_T.shape:
        raise ValueError(
            f'student logits {tuple(preds_S.shape)} and teacher logits '
            f'{tuple(preds_T.shape)} must have the same shape')
    if preds_S.dim() < 1 or preds_S.shape[-1] < 2:
        raise ValueError('logits need a class dimension of size >= 2, got '
                         f'shape {tuple(preds_S.shape)}')
    if not (preds_S.is_floating_point() and preds_T.is_floating_point()):
        raise ValueError(f'logits must be floating point, got {preds_S.dtype} '
                         f'and {preds_T.dtype}')


def _checked_targets(preds_S: Tensor, preds_T: Tensor, target: Tensor,
                     ignore_index: Optional[int],
                     check_range: bool) -> tuple[Tensor, Tensor]:
    """:func:`check_logits`, then :func:`prepare_targets` for the student."""
    check_logits(preds_S, preds_T)
    return prepare_targets(preds_S, target, ignore_index, check_range)


def _log_softmax(preds: Tensor, tau: float) -> Tensor:
    """``log_softmax(preds / tau)`` over the last dimension as (M, C), in
    float32: exp and log of a half-precision probability near 0 or 1 would
    over/underflow."""
    logits = preds.reshape(-1, preds.shape[-1]).float()
    if tau != 1.0:
        logits = logits / tau
    return logits.log_softmax(-1)


def _sample_weights(valid: Tensor, ignore_index: Optional[int],
                    tau: float) -> float | Tensor:
    """``tau**2 / (number of kept samples)`` per sample, 0 where ignored.

    A plain number when nothing can be ignored (the common case costs no
    tensor operation); otherwise an (M, 1) tensor. Weighting by
    multiplication (rather than selecting rows) keeps NaNs of ignored rows
    visible, and an empty or fully ignored batch gives a zero loss.
    """
    if ignore_index is None:
        return tau**2 / max(valid.numel(), 1)
    return (valid * (tau**2 / valid.sum().clamp_min(1))).unsqueeze(-1)


def _loca_row_terms(p_y: Tensor, p_k: Tensor, mass: Tensor, alpha: float,
                    calibrate: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What the losses need of LoCa per sample: ``s``, the calibrated mask,
    ``log s`` and ``log q_y`` (the arguments as for
    :func:`calibration_scale`)."""
    scale, calibrated = calibration_scale(p_y, p_k, mass, alpha, calibrate)
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
    p_y = log_p_y.exp()
    # 1 - p_y cancels only where p_y ~ 1, and there the sample is not
    # calibrated: 'wrong' needs 1 - p_y >= p_k >= p_y, 'margin'
    # 1 - p_y > alpha / 2. Uncalibrated samples keep q_y = p_y exactly.
    scale, calibrated, log_scale, log_q_y = _loca_row_terms(
        p_y, log_p_k.exp_(), 1.0 - p_y, alpha, calibrate)
    log_p.add_(log_scale).scatter_(-1, index, log_q_y)
    return scale, calibrated


def loca_kd_loss(preds_S: Tensor,
                 preds_T: Tensor,
                 target: Tensor,
                 tau: float = 4.0,
                 alpha: float = 0.9,
                 calibrate: str = 'wrong',
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
        check_range (bool): validate label values (a GPU synchronisation).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    check_calibration_args(alpha, tau, calibrate)
    labels, valid = _checked_targets(preds_S, preds_T, target, ignore_index,
                                     check_range)
    needs_grad = preds_S.requires_grad and torch.is_grad_enabled()
    # No autograd inside: a traced version records ~15 graph nodes whose
    # overhead dominates at small N x C, and keeps more (M, C) buffers for
    # backward. The loss also runs on (tokens x vocab) logits, so each
    # (M, C) buffer is reused in place once it has served.
    with torch.no_grad():
        index = labels.unsqueeze(-1)
        weights = _sample_weights(valid, ignore_index, tau)
        log_s = _log_softmax(preds_S, tau)
        log_q = _log_softmax(preds_T, tau)
        scale, calibrated = _loca_log_probs_(log_q, index, alpha, calibrate)
        weighted_q = log_q.exp().mul_(weights)
        loss = log_q.sub_(log_s).mul_(weighted_q).sum()
        del log_q
        if needs_grad:
            grad = log_s.exp_().mul_(weights).sub_(weighted_q).div_(tau)
    return _distill_result(preds_S, loss, grad if needs_grad else None, scale,
                           calibrated, valid, ignore_index)


def _distill_result(preds_S: Tensor, loss: Tensor, grad: Optional[Tensor],
                    scale: Tensor, calibrated: Tensor, valid: Tensor,
                    ignore_index: Optional[int]) -> DistillLoss:
    """Attach the precomputed student gradient and flatten the details."""
    if grad is not None:
        grad = grad.view(preds_S.shape).to(preds_S.dtype)
        loss = _PrecomputedGradient.apply(preds_S, loss, grad)
    calibrated = calibrated.view(-1)
    if ignore_index is not None:
        calibrated = calibrated & valid
    return DistillLoss(loss, scale.view(-1), calibrated, valid)


class _PrecomputedGradient(torch.autograd.Function):
    """A scalar loss whose gradient w.r.t. ``preds`` is already known."""

    @staticmethod
    def forward(ctx, preds: Tensor, loss: Tensor, grad: Tensor) -> Tensor:
        ctx.save_for_backward(grad)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        grad, = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None


# Stands in for the label's logit in the softmax over non-target classes:
# exp() turns it into an exact 0, and unlike -inf it cancels to 0 (not NaN)
# where student and teacher log-probabilities are subtracted.
_EXCLUDED_LOGIT = torch.finfo(torch.float32).min


def _loca_binary_(log_binary_T: Tensor, top_gap: Tensor, alpha: float,
                  calibrate: str) -> tuple[Tensor, Tensor, Tensor]:
    """LoCa on the teacher's [target, non-target] log-probabilities (M, 2).

    ``top_gap`` is ``z_k - z_y``, the teacher's largest non-target logit
    minus the label's, (M, 1). Returns the calibrated log-probabilities,
    ``s`` and the calibrated mask.
    """
    if calibrate == 'none':
        return (log_binary_T, *_uncalibrated(top_gap))
    log_p_y, log_mass = log_binary_T.split(1, -1)
    p_y, mass = log_binary_T.exp().split(1, -1)
    # p_k = p_y * exp(z_k - z_y): p_k >= p_y exactly where z_k >= z_y, so a
    # tie between the label and another class is calibrated as defined.
    p_k = log_p_y.add(top_gap).exp_()
    scale, calibrated, log_scale, log_q_y = _loca_row_terms(
        p_y, p_k, mass, alpha, calibrate)
    return torch.cat((log_q_y, log_mass + log_scale), -1), scale, calibrated


def dkd_loss(preds_S: Tensor,
             preds_T: Tensor,
             target: Tensor,
             tau: float = 4.0,
             alpha: float = 1.0,
             beta: float = 8.0,
             loca_alpha: float = 0.9,
             calibrate: str = 'none',
             ignore_index: Optional[int] = None,
             check_range: bool = True) -> DistillLoss:
    """Decoupled KD (Zhao et al., CVPR 2022), optionally on a LoCa teacher.

    ``loss = tau**2 * mean(alpha * TCKD + beta * NCKD)``. TCKD is the KL
    between the binary distributions ``[p_y, 1 - p_y]`` of teacher and
    student; NCKD the KL between their distributions over the non-target
    classes. LoCa keeps the ratios among non-target classes, so NCKD is the
    same with or without calibration; only TCKD sees the calibrated ``q_y``.

    Both parts come from the softmax over the non-target classes and the
    two log-sum-exps of each row, so a teacher that is (numerically) one-hot
    on the label gives finite values. The student gradient has a closed
    form, per sample and w.r.t. ``z_S = preds_S / tau``: at the label
    ``alpha * (s_y - q_y)``, elsewhere
    ``s'_i * (alpha * (s_nt - q_nt) + beta) - beta * p'_i``, with ``'`` the
    non-target softmaxes and ``_nt`` the non-target masses. It is computed
    here, with the loss, and attached without an autograd graph.

    Args:
        preds_S (Tensor): student logits (..., C).
        preds_T (Tensor): teacher logits (..., C).
        target (Tensor): labels (...) or soft labels (..., C).
        tau (float): temperature. Defaults to 4.0.
        alpha (float): TCKD weight. Defaults to 1.0.
        beta (float): NCKD weight. Defaults to 8.0.
        loca_alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'`` (plain DKD,
            the default here).
        ignore_index (int, optional): label of samples left out of the mean.
        check_range (bool): validate label values (a GPU synchronisation).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    check_calibration_args(loca_alpha, tau, calibrate)
    labels, valid = _checked_targets(preds_S, preds_T, target, ignore_index,
                                     check_range)
    needs_grad = preds_S.requires_grad and torch.is_grad_enabled()
    num_classes = preds_S.shape[-1]
    with torch.no_grad():
        weights = _sample_weights(valid, ignore_index, tau)
        # Student (0) and teacher (1) stacked: every step below is one
        # operator call for both, which is what costs at small N x C.
        logits = torch.stack((preds_S.reshape(-1, num_classes),
                              preds_T.reshape(-1, num_classes))).float()
        if tau != 1.0:
            logits.div_(tau)
        index = labels.view(1, -1, 1).expand(2, -1, -1)
        logit_y = logits.gather(-1, index)
        log_nt = logits.scatter_(-1, index, _EXCLUDED_LOGIT).log_softmax(-1)
        # The log-sum-exp over the non-target classes: their largest logit
        # minus its log-share of the non-target softmax.
        top_logit = logits.amax(-1, keepdim=True)
        lse_nt = top_logit - log_nt.amax(-1, keepdim=True)
        del logits
        log_binary_S, log_binary_T = torch.cat((logit_y, lse_nt),
                                               -1).log_softmax(-1)
        log_q_binary, scale, calibrated = _loca_binary_(
            log_binary_T, top_logit[1] - logit_y[1], loca_alpha, calibrate)
        q_binary = log_q_binary.exp()
        tckd = (log_q_binary - log_binary_S).mul_(q_binary).sum(-1, True)
        log_nt_S, log_nt_T = log_nt
        teacher_nt = log_nt_T.exp()  # p'
        nckd = log_nt_T.sub_(log_nt_S).mul_(teacher_nt).sum(-1, True)
        loss = tckd.mul_(alpha).add_(nckd, alpha=beta).mul_(weights).sum()
        if needs_grad:
            student_nt = log_nt_S.exp_()  # s'
            gap_y, gap_non_target = log_binary_S.exp().sub_(q_binary).split(
                1, -1)
            # Built in the buffer of p': log_nt's (2, M, C) buffer is freed
            # on return, and only this (M, C) one is kept for backward.
            grad = teacher_nt.mul_(-beta).addcmul_(
                student_nt, gap_non_target.mul(alpha).add_(beta))
            grad.scatter_(-1, index[0], gap_y.mul_(alpha))
            grad.mul_(weights / tau)
    return _distill_result(preds_S, loss, grad if needs_grad else None, scale,
                           calibrated, valid, ignore_index)


class _ChunkedLoss(torch.autograd.Function):
    """Runs a loss over row chunks and keeps only the input gradient.

    Each chunk's graph is built, differentiated and freed inside ``forward``,
    so the only (M, C) buffer kept for backward is the gradient w.r.t. the
    student logits, which autograd would have to produce anyway.
    """

    @staticmethod
    def forward(ctx, preds_S: Tensor, preds_T: Tensor, labels: Tensor,
                valid: Tensor, loss_fn, chunk_size: int, needs_grad: bool):
        grad_S = torch.empty_like(preds_S) if needs_grad else None
        sums, scales, calibrated = [], [], []
        # At least one (possibly empty) chunk, so that zero samples give the
        # same zero loss and empty details as the unchunked function.
        for start in range(0, max(preds_S.shape[0], 1), chunk_size):
            rows = slice(start, start + chunk_size)
            chunk_S = preds_S[rows].detach().requires_grad_(needs_grad)
            with torch.enable_grad():
                result = loss_fn(chunk_S, preds_T[rows], labels[rows])
                # loss_fn averages over its chunk; back to a sum, so that
                # chunks of any size add up to the mean over all of M.
                chunk_sum = result.loss * valid[rows].sum()
            if needs_grad:
                grad_S[rows] = torch.autograd.grad(chunk_sum, chunk_S)[0]
            sums.append(chunk_sum.detach())
            scales.append(result.scale.detach())
            calibrated.append(result.calibrated)
        count = valid.sum().clamp_min(1)
        if needs_grad:
            grad_S.div_(count)
        ctx.save_for_backward(grad_S)
        scale, calibrated = torch.cat(scales), torch.cat(calibrated)
        ctx.mark_non_differentiable(scale, calibrated)
        return torch.stack(sums).sum() / count, scale, calibrated

    @staticmethod
    def backward(ctx, grad_loss: Tensor, *unused):
        grad_S, = ctx.saved_tensors
        # In place: a second backward through the same graph then fails on
        # autograd's version check instead of reusing a scaled gradient.
        grad_S.mul_(grad_loss.to(grad_S.dtype))
        return grad_S, None, None, None, None, None, None


def chunked_distill_loss(loss_fn: Callable[..., DistillLoss],
                         preds_S: Tensor,
                         preds_T: Tensor,
                         target: Tensor,
                         chunk_size: int = 256,
                         ignore_index: Optional[int] = None,
                         check_range: bool = True,
                         **loss_kwargs) -> DistillLoss:
    """Evaluate a distillation loss chunk by chunk over the samples.

    Gives the loss and the student gradient of
    ``loss_fn(preds_S, preds_T, target, ignore_index=..., **loss_kwargs)``
    (up to float rounding) while holding the loss's (samples x classes)
    temporaries for ``chunk_size`` samples at a time; for backward it keeps
    one buffer the size of ``preds_S`` (its gradient). This is what a
    language model with a large vocabulary needs: every token is a sample.

    Args:
        loss_fn (Callable): :func:`loca_kd_loss`, :func:`dkd_loss` or any
            function with their signature whose ``loss`` is the mean over
            its ``valid`` samples.
        preds_S (Tensor): student logits (..., C).
        preds_T (Tensor): teacher logits (..., C); detached inside.
        target (Tensor): labels (...) or soft labels (..., C).
        chunk_size (int): samples per chunk. Defaults to 256.
        ignore_index (int, optional): label of samples left out of the mean.
        check_range (bool): validate label values once, for all chunks.
        **loss_kwargs: passed to ``loss_fn`` (``tau``, ``alpha``, ...).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    if chunk_size < 1:
        raise ValueError(f'chunk_size must be >= 1, got {chunk_size!r}')
    labels, valid = _checked_targets(preds_S, preds_T, target, ignore_index,
                                     check_range)
    if ignore_index is not None:
        # prepare_targets zeroes ignored labels; each chunk must see them.
        labels = labels.masked_fill(~valid, ignore_index)
    num_classes = preds_S.shape[-1]
    chunk_loss = functools.partial(
        loss_fn, ignore_index=ignore_index, check_range=False, **loss_kwargs)
    loss, scale, calibrated = _ChunkedLoss.apply(
        preds_S.reshape(-1, num_classes),
        preds_T.detach().reshape(-1, num_classes), labels, valid, chunk_loss,
        chunk_size, preds_S.requires_grad and torch.is_grad_enabled())
    return DistillLoss(loss, scale, calibrated, valid)
