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


def calibration_scale(p_y: Tensor, p_k: Tensor, mass_non_target: Tensor,
                      alpha: float, calibrate: str) -> tuple[Tensor, Tensor]:
    """The LoCa factor ``s`` per sample, from three per-sample probabilities.

    Args:
        p_y (Tensor): teacher probability of the label, shape (M,).
        p_k (Tensor): largest non-target probability, shape (M,).
        mass_non_target (Tensor): ``1 - p_y``, passed in so that callers can
            compute it without cancellation (as a sum of non-target terms).
        alpha (float): LoCa's alpha in (0, 1).
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.

    Returns:
        tuple[Tensor, Tensor]: ``s`` (1 exactly where not calibrated) and the
        bool mask of calibrated samples.
    """
    if calibrate == 'none':
        return torch.ones_like(p_y), torch.zeros_like(p_y, dtype=torch.bool)
    # mass_non_target >= p_k, so the denominator is 0 only for a teacher that
    # is one-hot on the label; the clamp keeps sigma finite there (s = 1).
    sigma = 1.0 / (mass_non_target + p_k).clamp_min(
        torch.finfo(p_y.dtype).tiny)
    scaled = alpha * sigma
    if calibrate == 'wrong':
        calibrated = p_k >= p_y
    else:  # 'margin'
        calibrated = scaled < 1.0
    scale = torch.where(calibrated, scaled, torch.ones_like(scaled))
    return scale, calibrated


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
    if check_range:
        bad = valid & ((labels < 0) | (labels >= num_classes))
        if bool(bad.any()):
            value = int(labels[bad][0])
            raise ValueError(
                f'label {value} is outside [0, {num_classes}) and is not '
                f'ignore_index ({ignore_index})')
    labels = torch.where(valid, labels, torch.zeros_like(labels))
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


def _flatten(preds_S: Tensor, preds_T: Tensor, target: Tensor, tau: float,
             ignore_index: Optional[int], check_range: bool):
    check_logits(preds_S, preds_T)
    labels, valid = prepare_targets(preds_S, target, ignore_index, check_range)
    num_classes = preds_S.shape[-1]
    # float16/bfloat16 logits are computed in float32: exp and log of a
    # half-precision probability near 0 or 1 would over/underflow.
    z_S = preds_S.reshape(-1, num_classes).float() / tau
    z_T = preds_T.detach().reshape(-1, num_classes).float() / tau
    return z_S, z_T, labels.unsqueeze(-1), valid


def _batch_mean(per_sample: Tensor, valid: Tensor, tau: float) -> Tensor:
    # Multiplying (rather than selecting) keeps NaNs visible and the graph
    # connected, so an empty or fully ignored batch gives a zero that
    # still back-propagates.
    count = valid.sum().clamp_min(1)
    return (per_sample * valid).sum() / count * tau**2


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

    The KL is computed from per-sample sums, without forming ``q``: for
    ``i != y`` ``q_i log(q_i / s_i) = s * p_i (log s + log(p_i / s_i))``, so

        KL(q || s) = s * KL_nt + s * (1 - p_y) * log s + q_y log(q_y / s_y)

    with ``KL_nt = sum_{i != y} p_i log(p_i / s_i)``, which costs the same
    element-wise pass as plain KD. ``q`` is built only for the gradient,
    in place in the buffer of the teacher's non-target probabilities.

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
    needs_grad = preds_S.requires_grad and torch.is_grad_enabled()
    # Everything runs without autograd: the gradient has a closed form,
    # tau * (softmax(z_S) - q) per kept sample, computed here and attached by
    # _PrecomputedGradient. That saves the ~15 graph nodes a traced version
    # records (their overhead dominates at small N x C) and keeps one
    # (M, C) buffer for backward instead of two. The loss also runs on
    # (tokens x vocab) logits, so every (M, C) buffer is dropped or reused
    # in place as soon as it has served.
    with torch.no_grad():
        z_S, z_T, index, valid = _flatten(preds_S, preds_T, target, tau,
                                          ignore_index, check_range)
        log_s = torch.log_softmax(z_S, dim=-1)
        del z_S
        log_p = torch.log_softmax(z_T, dim=-1)
        del z_T
        log_p_y = log_p.gather(-1, index).squeeze(-1)
        # Zero the label column in place: what remains is the non-target
        # part, whose sum is 1 - p_y without cancellation when p_y ~ 1.
        p_non_target = log_p.exp().scatter_(-1, index, 0.0)
        # sum_{i != y} p_i log(p_i / s_i), in log_p's own buffer: log_p is
        # finite and p is 0 at the label, so the label adds nothing.
        kl_non_target = log_p.sub_(log_s).mul_(p_non_target).sum(-1)
        del log_p
        mass_non_target = p_non_target.sum(-1)
        scale, calibrated = calibration_scale(log_p_y.exp(),
                                              p_non_target.amax(-1),
                                              mass_non_target, alpha,
                                              calibrate)
        q_y = torch.where(calibrated, 1.0 - scale * mass_non_target,
                          log_p_y.exp())
        log_q_y = torch.where(calibrated, q_y.log(), log_p_y)
        per_sample = (scale * kl_non_target +
                      scale * mass_non_target * scale.log() + q_y *
                      (log_q_y - log_s.gather(-1, index).squeeze(-1)))
        loss = _batch_mean(per_sample, valid, tau)
        if needs_grad:
            q = p_non_target.mul_(scale.unsqueeze(-1)).scatter_(
                -1, index, q_y.unsqueeze(-1))
            grad = log_s.exp_().sub_(q)
            del q, p_non_target
            count = valid.sum().clamp_min(1)
            grad.mul_((valid * (tau / count)).unsqueeze(-1))
            grad = grad.view(preds_S.shape).to(preds_S.dtype)
    if needs_grad:
        loss = _PrecomputedGradient.apply(preds_S, loss, grad)
    return DistillLoss(loss, scale, calibrated & valid, valid)


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

    Everything is computed from log-sum-exps of the logits, so a teacher that
    is (numerically) one-hot on the label gives finite values.

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
    z_S, z_T, index, valid = _flatten(preds_S, preds_T, target, tau,
                                      ignore_index, check_range)
    z_S_non_target = z_S.scatter(-1, index, float('-inf'))
    z_T_non_target = z_T.scatter(-1, index, float('-inf'))
    lse_S, lse_T = z_S.logsumexp(-1), z_T.logsumexp(-1)
    lse_S_nt = z_S_non_target.logsumexp(-1)
    lse_T_nt = z_T_non_target.logsumexp(-1)

    # Teacher binary distribution [p_y, 1 - p_y], calibrated if asked.
    log_p_y = z_T.gather(-1, index).squeeze(-1) - lse_T
    log_p_nt = lse_T_nt - lse_T
    p_k = (z_T_non_target.amax(-1) - lse_T).exp()
    scale, calibrated = calibration_scale(log_p_y.exp(), p_k, log_p_nt.exp(),
                                          loca_alpha, calibrate)
    log_q_nt = log_p_nt + scale.log()
    q_nt = log_q_nt.exp()
    q_y = torch.where(calibrated, 1.0 - q_nt, log_p_y.exp())
    log_q_y = torch.where(calibrated, q_y.log(), log_p_y)
    log_s_y = z_S.gather(-1, index).squeeze(-1) - lse_S
    log_s_nt = lse_S_nt - lse_S
    tckd = q_y * (log_q_y - log_s_y) + q_nt * (log_q_nt - log_s_nt)

    # KL over non-target classes: sum_i p'_i (z_T,i - z_S,i) - lse_T' + lse_S'
    # with p' = softmax over non-targets (0 at the label, so the label's
    # finite logit difference contributes nothing).
    p_nt = (z_T_non_target - lse_T_nt.unsqueeze(-1)).exp()
    nckd = (p_nt * (z_T - z_S)).sum(-1) - lse_T_nt + lse_S_nt
    per_sample = alpha * tckd + beta * nckd
    return DistillLoss(
        _batch_mean(per_sample, valid, tau), scale, calibrated & valid, valid)


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
    check_logits(preds_S, preds_T)
    labels, valid = prepare_targets(preds_S, target, ignore_index, check_range)
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
