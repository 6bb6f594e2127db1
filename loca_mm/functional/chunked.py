"""Distillation losses evaluated a chunk of rows at a time, for
(tokens x vocabulary) logits, and fused with the output layers.

One loop (:func:`_chunk_loop`) runs the loss on each chunk of rows and takes
the chunk's gradient from the same loss function with
``torch.func.grad_and_value``, as Liger-Kernel's fused distillation does:
no second formula. The gradients are computed in the forward pass and kept
(the chunk's graph is freed at once), so backward only scales them.

Supported: one backward, or several through a retained graph (they
accumulate); inside a compiled model they run eagerly (a graph break, so
``torch.compile(fullgraph=True)`` refuses them). Refused with a
``RuntimeError`` that names them: double backward (``create_graph=True``)
and ``torch.func`` transforms. The plain losses of :mod:`.losses` and
:mod:`.divergences` support all of these.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .inputs import check_logits, prepare_targets
from .losses import DistillLoss, loca_kd_loss


def _chunk_step(loss_fn: Callable[..., DistillLoss], chunk_S: Tensor,
                chunk_T: Tensor, chunk_labels: Tensor, needs_grad: bool):
    """One chunk: the loss summed over its valid rows, its gradient
    w.r.t. ``chunk_S`` (None without ``needs_grad``), ``s`` and the
    calibrated mask."""

    def chunk_sum(logits_S: Tensor):
        result = loss_fn(logits_S, chunk_T, chunk_labels)
        # loss_fn averages over its chunk: back to a sum, so that chunks of
        # any size add up.
        total = result.loss * result.valid.sum()
        return total, (result.scale, result.calibrated)

    if not needs_grad:
        return (None, *chunk_sum(chunk_S))
    grad, (total, details) = torch.func.grad_and_value(
        chunk_sum, has_aux=True)(chunk_S)
    return grad, total, details


@functools.lru_cache(maxsize=None)
def _compiled_chunk_step():
    """:func:`_chunk_step` compiled once per process: ``torch.compile``
    fuses the loss and its gradient into a few kernels per chunk."""
    return torch.compile(_chunk_step)


def _chunk_loop(loss_fn: Callable[..., DistillLoss], logits_S: Tensor,
                logits_T: Tensor, labels: Tensor, chunk_size: int,
                needs_grad: bool, compile: bool = False):
    """``loss_fn`` over row chunks of (M, C) logits.

    Returns the loss summed over the valid rows, its gradient w.r.t.
    ``logits_S`` (None without ``needs_grad``), and ``s`` and the
    calibrated mask per row. At least one (possibly empty) chunk, so that
    zero rows give the loss function's zero loss. With ``compile`` each
    chunk runs :func:`_chunk_step` through ``torch.compile``.
    """
    step = _compiled_chunk_step() if compile else _chunk_step
    grad = torch.empty_like(logits_S) if needs_grad else None
    totals, scales, calibrated = [], [], []
    for start in range(0, max(len(labels), 1), chunk_size):
        rows = slice(start, start + chunk_size)
        chunk_grad, total, (scale, calibrated_rows) = step(
            loss_fn, logits_S[rows], logits_T[rows], labels[rows],
            needs_grad)
        if needs_grad:
            grad[rows] = chunk_grad
        totals.append(total)
        scales.append(scale)
        calibrated.append(calibrated_rows)
    return (torch.stack(totals).sum(), grad, torch.cat(scales),
            torch.cat(calibrated))


def _refuse_double_backward(name: str) -> None:
    # Grad mode is on in backward exactly under create_graph=True.
    if torch.is_grad_enabled():
        raise RuntimeError(
            f'{name} does not support double backward (create_graph=True): '
            'its gradients are computed in the forward pass, without a '
            'graph; use the plain loss on the whole logits for higher '
            'derivatives')


def _refuse_transforms(name: str, *tensors: Optional[Tensor]) -> None:
    if any(t is not None and torch._C._functorch.is_functorch_wrapped_tensor(t)
           for t in tensors):
        raise RuntimeError(
            f'{name} does not support torch.func transforms (grad, vmap, '
            '...): it is an autograd.Function whose gradients come from the '
            'forward pass; transform the plain loss instead')


class _ChunkedLoss(torch.autograd.Function):
    """The loss and its gradient w.r.t. the student logits, chunk by chunk;
    the gradient is the one (M, C) buffer kept for backward."""

    @staticmethod
    def forward(ctx, preds_S: Tensor, preds_T: Tensor, labels: Tensor,
                count: Tensor, loss_fn, chunk_size: int):
        num_classes = preds_S.shape[-1]
        total, grad, scale, calibrated = _chunk_loop(
            loss_fn, preds_S.reshape(-1, num_classes),
            preds_T.reshape(-1, num_classes), labels, chunk_size,
            ctx.needs_input_grad[0])
        if grad is not None:
            # In place: the buffer is this loss's own, and a copy would
            # hold a second (M, C) gradient at the peak.
            grad = grad.div_(count.to(grad.dtype)).view(preds_S.shape)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(scale, calibrated)
        return total / count, scale, calibrated

    @staticmethod
    def backward(ctx, grad_loss: Tensor, *unused):
        _refuse_double_backward('chunked_distill_loss')
        grad, = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None, None, None


def _chunk_args(preds_S: Tensor, target: Tensor,
                ignore_index: Optional[int], check_labels: bool, loss_fn,
                loss_kwargs: dict):
    """Labels for the chunks (ignored ones kept as ``ignore_index``, so
    that each chunk leaves them out), the valid mask, and the loss with its
    arguments bound (labels checked once, here)."""
    labels, valid = prepare_targets(preds_S, target, ignore_index,
                                    check_labels)
    if ignore_index is not None:
        labels = labels.masked_fill(~valid, ignore_index)
    chunk_loss = functools.partial(
        loss_fn, ignore_index=ignore_index, check_labels=False, **loss_kwargs)
    return labels, valid, chunk_loss


def _check_size(name: str, size) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f'{name} must be an int >= 1, got {size!r}')


@torch.compiler.disable
def chunked_distill_loss(loss_fn: Callable[..., DistillLoss], preds_S: Tensor,
                         preds_T: Tensor, target: Tensor,
                         chunk_size: int = 256,
                         ignore_index: Optional[int] = None,
                         check_labels: bool = True,
                         **loss_kwargs) -> DistillLoss:
    """A distillation loss evaluated ``chunk_size`` samples at a time.

    Equals ``loss_fn(preds_S, preds_T, target, ignore_index=...,
    **loss_kwargs)`` in value and student gradient (up to float rounding)
    while holding the loss's (samples x classes) temporaries for one chunk;
    for backward it keeps one buffer the size of ``preds_S``, its gradient.
    See the module for what it supports.

    Args:
        loss_fn (Callable): :func:`loca_kd_loss`, :func:`dkd_loss`, a
            divergence, or any function with their signature whose ``loss``
            is the mean over its ``valid`` samples.
        preds_S (Tensor): student logits (..., C).
        preds_T (Tensor): teacher logits (..., C); detached inside.
        target (Tensor): labels (...) or soft labels (..., C).
        chunk_size (int): samples per chunk. Defaults to 256.
        ignore_index (int, optional): label of samples left out of the mean.
        check_labels (bool): refuse labels outside [0, C), once for all
            chunks. Defaults to True.
        **loss_kwargs: passed to ``loss_fn`` (``tau``, ``alpha``, ...).

    Returns:
        DistillLoss: the loss and per-sample calibration details.
    """
    _check_size('chunk_size', chunk_size)
    _refuse_transforms('chunked_distill_loss', preds_S, preds_T)
    check_logits(preds_S, preds_T)
    labels, valid, chunk_loss = _chunk_args(preds_S, target, ignore_index,
                                            check_labels, loss_fn,
                                            loss_kwargs)
    loss, scale, calibrated = _ChunkedLoss.apply(
        preds_S, preds_T.detach(), labels,
        valid.sum().clamp_min(1), chunk_loss, chunk_size)
    return DistillLoss(loss, scale, calibrated, valid)


class _FusedLinearLoss(torch.autograd.Function):
    """Projects ``chunk_size`` rows at a time to logits and runs
    :func:`_chunk_loop` on them (``block_size`` rows per loss call); the
    projection's gradients come from autograd through ``F.linear``, summed
    over the chunks into leaves that stand in for the student's hidden
    states, weight and bias. Nothing the size of all the logits exists."""

    @staticmethod
    def forward(ctx, hidden_S: Tensor, weight_S: Tensor,
                bias_S: Optional[Tensor], hidden_T: Tensor, weight_T: Tensor,
                bias_T: Optional[Tensor], labels: Tensor, loss_fn,
                chunk_size: int, block_size: int, compile: bool):
        student = [
            None if t is None else t.detach().requires_grad_(needs)
            for t, needs in zip((hidden_S, weight_S, bias_S),
                                ctx.needs_input_grad)
        ]
        hidden, weight, bias = student
        needs_grad = any(ctx.needs_input_grad[:3])
        totals, scales, calibrated = [], [], []
        for start in range(0, max(len(labels), 1), chunk_size):
            rows = slice(start, start + chunk_size)
            with torch.enable_grad():
                logits_S = F.linear(hidden[rows], weight, bias)
            logits_T = F.linear(hidden_T[rows], weight_T, bias_T)
            total, grad, scale, calibrated_rows = _chunk_loop(
                loss_fn, logits_S.detach(), logits_T, labels[rows],
                block_size, needs_grad and logits_S.numel() > 0, compile)
            if grad is not None:
                logits_S.backward(grad)
            totals.append(total)
            scales.append(scale)
            calibrated.append(calibrated_rows)
        count = max(len(labels), 1)
        ctx.grads = [
            None if t is None or not t.requires_grad else
            (torch.zeros_like(t) if t.grad is None else t.grad / count)
            for t in student
        ]
        scale, calibrated = torch.cat(scales), torch.cat(calibrated)
        ctx.mark_non_differentiable(scale, calibrated)
        return torch.stack(totals).sum() / count, scale, calibrated

    @staticmethod
    def backward(ctx, grad_loss: Tensor, *unused):
        _refuse_double_backward('fused_linear_distill_loss')
        return (*(None if grad is None else grad * grad_loss.to(grad.dtype)
                  for grad in ctx.grads), None, None, None, None, None, None,
                None, None)


def _check_projection(name: str, hidden: Tensor, weight: Tensor,
                      bias: Optional[Tensor]) -> None:
    if hidden.dim() != 2 or weight.dim() != 2:
        raise ValueError(
            f'{name}_hidden must be (N, H) and {name}_weight (V, H), got '
            f'shapes {tuple(hidden.shape)} and {tuple(weight.shape)}')
    if hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f'{name}_hidden has {hidden.shape[1]} features but '
            f'{name}_weight expects {weight.shape[1]} '
            f'(shapes {tuple(hidden.shape)} and {tuple(weight.shape)})')
    if bias is not None and tuple(bias.shape) != (weight.shape[0], ):
        raise ValueError(f'{name}_bias must have shape ({weight.shape[0]},), '
                         f'got {tuple(bias.shape)}')


@torch.compiler.disable
def fused_linear_distill_loss(student_hidden: Tensor, student_weight: Tensor,
                              teacher_hidden: Tensor, teacher_weight: Tensor,
                              target: Tensor,
                              loss_fn: Callable[...,
                                                DistillLoss] = loca_kd_loss,
                              chunk_size: int = 1024,
                              ignore_index: Optional[int] = None,
                              student_bias: Optional[Tensor] = None,
                              teacher_bias: Optional[Tensor] = None, *,
                              block_size: int = 128, check_labels: bool = True,
                              compile: bool = False,
                              **loss_kwargs) -> DistillLoss:
    """A distillation loss on logits that are never materialised in full.

    Equals ``loss_fn(student_hidden @ student_weight.T (+ student_bias),
    teacher_hidden @ teacher_weight.T (+ teacher_bias), target,
    ignore_index=..., **loss_kwargs)`` in value and in the gradients w.r.t.
    the student's hidden states, weight and bias (up to float rounding).
    Rows whose label is ``ignore_index`` are dropped before the projection;
    the teacher gets no gradient. See the module for what it supports.

    Args:
        student_hidden (Tensor): student hidden states (N, H_S).
        student_weight (Tensor): student output weight (V, H_S).
        teacher_hidden (Tensor): teacher hidden states (N, H_T).
        teacher_weight (Tensor): teacher output weight (V, H_T).
        target (Tensor): labels (N,) or soft labels (N, V).
        loss_fn (Callable): as for :func:`chunked_distill_loss`. Defaults to
            :func:`loca_kd_loss`.
        chunk_size (int): rows projected at a time (student and teacher
            logits of this many rows). Defaults to 1024.
        ignore_index (int, optional): label of rows left out of the mean.
        student_bias (Tensor, optional): student output bias (V,).
        teacher_bias (Tensor, optional): teacher output bias (V,).
        block_size (int): rows per call of the loss within a chunk (its
            temporaries). Defaults to 128.
        check_labels (bool): refuse labels outside [0, V), once.
        compile (bool): run each block's loss and gradient through
            ``torch.compile`` (compiled once per process and loss; the
            first call pays the compilation). Defaults to False.
        **loss_kwargs: passed to ``loss_fn`` (``tau``, ``alpha``, ...).

    Returns:
        DistillLoss: the loss and, per row (N,), ``s`` (1 on ignored rows),
        the calibrated mask and the mask of kept rows.
    """
    _check_size('chunk_size', chunk_size)
    _check_size('block_size', block_size)
    _refuse_transforms('fused_linear_distill_loss', student_hidden,
                       student_weight, student_bias)
    _check_projection('student', student_hidden, student_weight, student_bias)
    _check_projection('teacher', teacher_hidden, teacher_weight, teacher_bias)
    if student_weight.shape[0] != teacher_weight.shape[0]:
        raise ValueError(
            f'student and teacher predict {student_weight.shape[0]} and '
            f'{teacher_weight.shape[0]} classes: they must share one '
            'vocabulary')
    num_rows, num_classes = student_hidden.shape[0], student_weight.shape[0]
    if teacher_hidden.shape[0] != num_rows:
        raise ValueError(
            f'student hidden states {tuple(student_hidden.shape)} and teacher '
            f'hidden states {tuple(teacher_hidden.shape)} must have the same '
            'number of rows')
    # The label checks on the logits' shape alone: a meta tensor holds no
    # memory.
    labels, valid, chunk_loss = _chunk_args(
        torch.empty(num_rows, num_classes, device='meta'), target,
        ignore_index, check_labels, loss_fn, loss_kwargs)
    kept = valid.nonzero().squeeze(-1)
    all_kept = kept.numel() == num_rows
    if not all_kept:
        student_hidden = student_hidden.index_select(0, kept)
        teacher_hidden = teacher_hidden.index_select(0, kept)
        labels = labels.index_select(0, kept)
    loss, scale, calibrated = _FusedLinearLoss.apply(
        student_hidden, student_weight, student_bias, teacher_hidden.detach(),
        teacher_weight.detach(),
        None if teacher_bias is None else teacher_bias.detach(), labels,
        chunk_loss, chunk_size, min(block_size, chunk_size), compile)
    if not all_kept:
        scale = scale.new_ones(num_rows).index_copy_(0, kept, scale)
        calibrated = calibrated.new_zeros(num_rows).index_copy_(
            0, kept, calibrated)
    return DistillLoss(loss, scale, calibrated, valid)
