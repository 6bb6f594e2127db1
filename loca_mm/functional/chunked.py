"""Distillation losses evaluated chunk by chunk over the samples, for
(tokens x vocabulary) logits."""
from __future__ import annotations

import functools
import weakref
from typing import Callable, Optional

import torch
from torch import Tensor

from .inputs import _checked_targets
from .result import DistillLoss


def _chunk_gradient(chunk_S: Tensor, chunk_T: Tensor, labels: Tensor,
                    valid: Tensor, loss_fn, needs_grad: bool,
                    create_graph: bool):
    """Run ``loss_fn`` on one chunk of (M, C) logits.

    Returns the sum of its loss over its valid samples, the loss's details
    and the gradient of that sum w.r.t. ``chunk_S`` (None without
    ``needs_grad``). With ``create_graph`` the chunk stays attached to the
    logits it is a part of and the gradient carries a graph; otherwise the
    chunk's graph is freed once its gradient is taken.
    """
    if not create_graph:
        chunk_S = chunk_S.detach().requires_grad_(needs_grad)
    with torch.enable_grad():
        result = loss_fn(chunk_S, chunk_T, labels)
        # loss_fn averages over its chunk; back to a sum, so that chunks of
        # any size add up to the mean over all of M.
        chunk_sum = result.loss * valid.sum()
    grad = None
    if needs_grad:
        grad, = torch.autograd.grad(
            chunk_sum, chunk_S, create_graph=create_graph)
    return chunk_sum, result, grad


def _chunk_gradients(preds_S: Tensor, preds_T: Tensor, labels: Tensor,
                     valid: Tensor, loss_fn, chunk_size: int, needs_grad: bool,
                     create_graph: bool):
    """:func:`_chunk_gradient` over row chunks of the (M, C) logits; yields
    each chunk's rows with its results."""
    # At least one (possibly empty) chunk, so that zero samples give the
    # same zero loss and empty details as the unchunked function.
    for start in range(0, max(preds_S.shape[0], 1), chunk_size):
        rows = slice(start, start + chunk_size)
        chunk_sum, result, grad = _chunk_gradient(
            preds_S[rows], preds_T[rows], labels[rows], valid[rows], loss_fn,
            needs_grad, create_graph)
        yield rows, chunk_sum, result, grad
        # Before the next chunk's loss: its gradient would be a second
        # buffer of the chunk's size.
        del result, chunk_sum, grad


class _ChunkedLoss(torch.autograd.Function):
    """Runs a loss over row chunks and keeps only the input gradient.

    Each chunk's graph is built, differentiated and freed inside ``forward``,
    so the only (M, C) buffer kept for backward is the gradient w.r.t. the
    student logits, which autograd would have to produce anyway. Double
    backward runs the chunks again, attached to the student logits, which
    are held by weak reference until then (as are the teacher's).
    """

    @staticmethod
    def forward(ctx, preds_S: Tensor, preds_T: Tensor, labels: Tensor,
                valid: Tensor, loss_fn, chunk_size: int, needs_grad: bool):
        num_classes = preds_S.shape[-1]
        flat_S = preds_S.reshape(-1, num_classes)
        flat_T = preds_T.detach().reshape(-1, num_classes)
        grad_S = torch.empty_like(flat_S) if needs_grad else None
        sums, scales, calibrated = [], [], []
        for rows, chunk_sum, result, grad in _chunk_gradients(
                flat_S, flat_T, labels, valid, loss_fn, chunk_size,
                needs_grad, create_graph=False):
            if needs_grad:
                grad_S[rows] = grad
            sums.append(chunk_sum.detach())
            scales.append(result.scale.detach())
            calibrated.append(result.calibrated)
        count = valid.sum().clamp_min(1)
        if needs_grad:
            grad_S = grad_S.div_(count).view(preds_S.shape)
        ctx.save_for_backward(grad_S)
        if needs_grad and not torch.compiler.is_compiling():
            ctx.inputs = [(weakref.ref(t), t._version)
                          for t in (preds_S, preds_T)]
            ctx.chunking = labels, valid, loss_fn, chunk_size, count
        scale, calibrated = torch.cat(scales), torch.cat(calibrated)
        ctx.mark_non_differentiable(scale, calibrated)
        return torch.stack(sums).sum() / count, scale, calibrated

    @staticmethod
    def backward(ctx, grad_loss: Tensor, *unused):
        grad_S, = ctx.saved_tensors
        # Grad mode is on in backward exactly under create_graph=True.
        if torch.is_grad_enabled() and hasattr(ctx, 'inputs'):
            part = _ChunkedLoss._differentiable_gradient(ctx)
            grad_S = grad_S + (part - part.detach())
        # Not in place: the saved gradient serves every backward through a
        # retained graph, and they accumulate as for the unchunked losses.
        return (grad_S * grad_loss.to(grad_S.dtype), None, None, None, None,
                None, None)

    @staticmethod
    def _differentiable_gradient(ctx) -> Tensor:
        """The student gradient again, chunk by chunk, with its graph."""
        preds_S, preds_T = (ref() for ref, _ in ctx.inputs)
        if any(t is None or t._version != version
               for t, (_, version) in zip((preds_S, preds_T), ctx.inputs)):
            raise RuntimeError(
                'double backward (create_graph=True) through '
                'chunked_distill_loss needs the student and teacher logits '
                'it was given, but they were freed or modified in place '
                'since: keep them alive and unchanged until then')
        labels, valid, loss_fn, chunk_size, count = ctx.chunking
        num_classes = preds_S.shape[-1]
        grads = [
            grad for _, _, _, grad in _chunk_gradients(
                preds_S.reshape(-1, num_classes),
                preds_T.detach().reshape(-1, num_classes), labels, valid,
                loss_fn, chunk_size, True, create_graph=True)
        ]
        return (torch.cat(grads) / count).view(preds_S.shape)


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
    chunk_loss = functools.partial(
        loss_fn, ignore_index=ignore_index, check_range=False, **loss_kwargs)
    loss, scale, calibrated = _ChunkedLoss.apply(
        preds_S, preds_T, labels, valid, chunk_loss, chunk_size,
        preds_S.requires_grad and torch.is_grad_enabled())
    return DistillLoss(loss, scale, calibrated, valid)
