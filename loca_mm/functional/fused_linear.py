"""A distillation loss fused with the output projection of both models, for
language models whose (tokens x vocabulary) logits do not fit in memory."""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
from torch import Tensor

from .chunked import _chunk_gradient
from .inputs import prepare_targets
from .kd import loca_kd_loss
from .result import DistillLoss


def _row_blocks(start: int, stop: int, size: int):
    """Consecutive slices of at most ``size`` rows covering [start, stop);
    one empty slice if the range is empty."""
    for begin in range(start, max(stop, start + 1), size):
        yield slice(begin, min(begin + size, stop))


def _within(rows: slice, outer: slice) -> slice:
    """The rows of ``rows`` as positions within the rows of ``outer``."""
    return slice(rows.start - outer.start, rows.stop - outer.start)


# The loss runs on slices of a teacher block whose (rows x V) float32
# buffers are about this size: its few temporaries then stay in the CPU's
# cache (and are small next to the chunk on any device), and a slice still
# has enough elements that the per-call overhead does not matter.
_LOSS_SLICE_BYTES = 4 * 2**20


def _slice_rows(num_classes: int) -> int:
    """Rows per call of the loss in :class:`_FusedLinearLoss`."""
    return max(1, _LOSS_SLICE_BYTES // (4 * num_classes))


def _project(hidden: Tensor, weight: Tensor, bias: Optional[Tensor],
             out: Tensor) -> Tensor:
    """``F.linear(hidden, weight, bias)`` written into the first rows of
    ``out``: one buffer serves every chunk (no fresh pages to fault in)."""
    out = out[:hidden.shape[0]]
    if bias is None:
        return torch.mm(hidden, weight.t(), out=out)
    return torch.addmm(bias, hidden, weight.t(), out=out)


class _FusedLinearLoss(torch.autograd.Function):
    """Projects row chunks to logits, runs the loss and keeps only the
    gradients w.r.t. the student's hidden states, weight and bias.

    Per chunk of rows: the student's logits (chunk x V); per block of them
    the teacher's logits (block x V); per slice of a block (a few MiB of
    logits, :data:`_LOSS_SLICE_BYTES`) one call of the loss, whose
    temporaries are that small. The loss's gradient w.r.t. the student's
    logits overwrites them slice by slice (they are not needed after), then
    gives the chunk's gradients w.r.t. the hidden states and, accumulated
    into one buffer, the weight. Nothing the size of the logits is kept for
    backward; the gradients are computed in the forward pass, backward only
    scales them.
    """

    @staticmethod
    def forward(ctx, hidden_S: Tensor, weight_S: Tensor,
                bias_S: Optional[Tensor], hidden_T: Tensor, weight_T: Tensor,
                bias_T: Optional[Tensor], labels: Tensor, loss_fn,
                chunk_size: int, block_size: int,
                needs_grad: tuple[bool, bool, bool]):
        needs_hidden, needs_weight, needs_bias = needs_grad
        num_rows, num_classes = hidden_S.shape[0], weight_S.shape[0]
        # Zero rows: nothing to differentiate (the loss is a constant 0).
        any_grad = any(needs_grad) and num_rows > 0
        grad_hidden = torch.empty_like(hidden_S) if needs_hidden else None
        # Summed over chunks: in float32 at least, so that a bfloat16
        # weight's gradient is rounded once, not once per chunk.
        accumulate = torch.promote_types(weight_S.dtype, torch.float32)
        grad_weight = (
            torch.zeros(
                weight_S.shape, dtype=accumulate, device=weight_S.device)
            if needs_weight else None)
        grad_bias = (
            torch.zeros(num_classes, dtype=accumulate, device=weight_S.device)
            if needs_bias else None)
        logits_S_buffer = hidden_S.new_empty(
            (min(chunk_size, num_rows), num_classes))
        logits_T_buffer = hidden_T.new_empty(
            (min(block_size, num_rows), num_classes))
        slice_rows = _slice_rows(num_classes)
        # Ignored rows were dropped: every row counts.
        valid = torch.ones_like(labels, dtype=torch.bool)
        sums, scales, calibrated = [], [], []
        # At least one (possibly empty) chunk: zero rows give the loss
        # function's zero loss and empty details.
        for chunk in _row_blocks(0, num_rows, chunk_size):
            chunk_hidden = hidden_S[chunk]
            logits_S = _project(chunk_hidden, weight_S, bias_S,
                                logits_S_buffer)
            for block in _row_blocks(chunk.start, chunk.stop, block_size):
                logits_T = _project(hidden_T[block], weight_T, bias_T,
                                    logits_T_buffer)
                for rows in _row_blocks(block.start, block.stop, slice_rows):
                    slice_S = logits_S[_within(rows, chunk)]
                    slice_sum, result, grad = _chunk_gradient(
                        slice_S, logits_T[_within(rows, block)], labels[rows],
                        valid[rows], loss_fn, any_grad, create_graph=False)
                    if any_grad:
                        slice_S.copy_(grad)
                    sums.append(slice_sum.detach())
                    scales.append(result.scale.detach())
                    calibrated.append(result.calibrated)
                    # Freed before the next slice's loss runs.
                    del slice_sum, result, grad
            if any_grad:
                grad_logits = logits_S  # overwritten slice by slice above
                if needs_hidden:
                    torch.mm(grad_logits, weight_S, out=grad_hidden[chunk])
                if needs_weight:
                    if grad_weight.dtype == grad_logits.dtype:
                        grad_weight.addmm_(grad_logits.t(), chunk_hidden)
                    else:
                        grad_weight.add_(grad_logits.t().mm(chunk_hidden))
                if needs_bias:
                    grad_bias.add_(grad_logits.sum(0))
        # Freed before the casts below, which may copy the weight gradient.
        del logits_S_buffer, logits_T_buffer
        count = max(num_rows, 1)
        grads = []
        for grad, like in ((grad_hidden, hidden_S), (grad_weight, weight_S),
                           (grad_bias, bias_S)):
            grads.append(None if grad is
                         None else grad.div_(count).to(like.dtype))
        ctx.grads = grads
        scale, calibrated = torch.cat(scales), torch.cat(calibrated)
        ctx.mark_non_differentiable(scale, calibrated)
        return torch.stack(sums).sum() / count, scale, calibrated

    @staticmethod
    def backward(ctx, grad_loss: Tensor, *unused):
        if torch.is_grad_enabled():
            raise RuntimeError(
                'fused_linear_distill_loss does not support double backward '
                '(create_graph=True): its gradients are computed in the '
                'forward pass, without a graph; use the loss on materialised '
                'logits for higher derivatives')
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError(
                'fused_linear_distill_loss does not support a second '
                'backward through the same graph (retain_graph=True): its '
                'gradients are handed to the first backward in place, '
                'without a copy the size of the weight; compute the loss '
                'again')
        # In place, and no reference kept: autograd can then take them as
        # the parameters' .grad without copying them.
        grad_hidden, grad_weight, grad_bias = (
            None if grad is None else grad.mul_(grad_loss.to(grad.dtype))
            for grad in grads)
        return (grad_hidden, grad_weight, grad_bias, None, None, None, None,
                None, None, None, None)


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


def fused_linear_distill_loss(student_hidden: Tensor,
                              student_weight: Tensor,
                              teacher_hidden: Tensor,
                              teacher_weight: Tensor,
                              target: Tensor,
                              loss_fn: Callable[...,
                                                DistillLoss] = loca_kd_loss,
                              chunk_size: int = 1024,
                              ignore_index: Optional[int] = None,
                              student_bias: Optional[Tensor] = None,
                              teacher_bias: Optional[Tensor] = None,
                              *,
                              block_size: int = 128,
                              check_range: bool = True,
                              **loss_kwargs) -> DistillLoss:
    """A distillation loss on logits that are never materialised in full.

    Equals ``loss_fn(student_hidden @ student_weight.T (+ student_bias),
    teacher_hidden @ teacher_weight.T (+ teacher_bias), target,
    ignore_index=..., **loss_kwargs)`` in value and in the gradients w.r.t.
    the student's hidden states, weight and bias (up to float rounding),
    while holding the student's logits of ``chunk_size`` rows at a time
    (overwritten by their gradient), the teacher's logits of ``block_size``
    of those rows, and the loss's temporaries of a few MiB. Rows whose label
    is ``ignore_index`` are dropped before the projection. The teacher gets no
    gradient. The gradients are computed chunk by chunk in the forward pass,
    as Liger-Kernel's fused losses do; backward only scales them, in place,
    so double backward and a second backward through a retained graph are
    refused with a ``RuntimeError``.

    Args:
        student_hidden (Tensor): student hidden states (N, H_S), the input of
            its output layer.
        student_weight (Tensor): student output weight (V, H_S).
        teacher_hidden (Tensor): teacher hidden states (N, H_T).
        teacher_weight (Tensor): teacher output weight (V, H_T).
        target (Tensor): integer labels (N,), or soft labels (N, V) (their
            argmax is the label, as for the losses).
        loss_fn (Callable): :func:`loca_kd_loss`, :func:`dkd_loss`, a
            divergence of :mod:`.divergences`, or any function with their
            signature whose ``loss`` is the mean over its samples.
            Defaults to :func:`loca_kd_loss`.
        chunk_size (int): rows per chunk: the gradients w.r.t. the hidden
            states and the weight are taken once per chunk. Defaults to
            1024.
        ignore_index (int, optional): label of rows left out of the mean.
        student_bias (Tensor, optional): student output bias (V,).
        teacher_bias (Tensor, optional): teacher output bias (V,).
        block_size (int): rows per block within a chunk for the teacher's
            logits (one ``block_size x V`` buffer); at most ``chunk_size``
            are used. Smaller blocks hold less memory but make more,
            smaller matrix products, which run less efficiently. The loss
            itself runs on slices of a few MiB of logits whatever the
            block. Defaults to 128.
        check_range (bool): validate label values once (a GPU
            synchronisation).
        **loss_kwargs: passed to ``loss_fn`` (``tau``, ``alpha``, ...).

    Returns:
        DistillLoss: the loss and, per row (N,), the LoCa scale (1 on ignored
        rows), the calibrated mask and the mask of kept rows.
    """
    for name, size in (('chunk_size', chunk_size), ('block_size',
                                                     block_size)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f'{name} must be an int >= 1, got {size!r}')
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
    # The checks of the losses, on the logits' shape alone: a meta tensor
    # holds no memory.
    labels, valid = prepare_targets(
        torch.empty(num_rows, num_classes, device='meta'), target,
        ignore_index, check_range)
    kept = valid.nonzero().squeeze(-1)
    all_kept = kept.numel() == num_rows
    if not all_kept:
        student_hidden = student_hidden.index_select(0, kept)
        teacher_hidden = teacher_hidden.index_select(0, kept)
        labels = labels.index_select(0, kept)
    grad_on = torch.is_grad_enabled()
    needs_grad = tuple(
        grad_on and tensor is not None and tensor.requires_grad
        for tensor in (student_hidden, student_weight, student_bias))
    chunk_loss = functools.partial(
        loss_fn, ignore_index=ignore_index, check_range=False, **loss_kwargs)
    loss, scale, calibrated = _FusedLinearLoss.apply(
        student_hidden, student_weight, student_bias, teacher_hidden.detach(),
        teacher_weight.detach(),
        None if teacher_bias is None else teacher_bias.detach(), labels,
        chunk_loss, chunk_size, min(block_size, chunk_size), needs_grad)
    if not all_kept:
        scale = scale.new_ones(num_rows).index_copy_(0, kept, scale)
        calibrated = calibrated.new_zeros(num_rows).index_copy_(
            0, kept, calibrated)
    return DistillLoss(loss, scale, calibrated, valid)
