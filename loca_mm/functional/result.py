"""What the distillation losses return, and how their gradient is attached."""
from __future__ import annotations

import weakref
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor


class DistillLoss(NamedTuple):
    """Result of the distillation losses (:func:`loca_kd_loss`,
    :func:`dkd_loss`, :func:`chunked_distill_loss`).

    Attributes:
        loss (Tensor): scalar loss (``tau**2`` included, batch mean over the
            samples that are not ignored); float32, or float64 when either
            logits tensor is float64.
        scale (Tensor): LoCa factor ``s`` per flattened sample, shape (M,).
        calibrated (Tensor): bool mask (M,) of the calibrated samples; ignored
            samples are never counted as calibrated.
        valid (Tensor): bool mask (M,) of the samples that entered the mean.
    """
    loss: Tensor
    scale: Tensor
    calibrated: Tensor
    valid: Tensor


class _StudentLogits:
    """The student logits a loss was given, for its double backward.

    Held by weak reference: keeping them alive for an ordinary backward
    would cost a logits-sized buffer. ``gradient(logits)`` recomputes,
    differentiably, the part of the precomputed gradient that depends on
    the student (the rest depends on the detached teacher only).
    """

    def __init__(self, logits: Tensor, gradient: Callable[[Tensor], Tensor],
                 loss_name: str):
        self.logits = weakref.ref(logits)
        self.version = logits._version
        self.gradient = gradient
        self.loss_name = loss_name

    def differentiable(self, grad: Tensor) -> Tensor:
        """``grad`` with the graph of its dependence on the student."""
        logits = self.logits()
        if logits is None or logits._version != self.version:
            raise RuntimeError(
                f'double backward (create_graph=True) through '
                f'{self.loss_name} needs the student logits it was given, '
                'but they were freed or modified in place since: keep them '
                'alive and unchanged until then, or use '
                f'loca_mm.functional.reference.{self.loss_name} (plain '
                'autograd)')
        part = self.gradient(logits).view(grad.shape).to(grad.dtype)
        # Same value as grad (x - x is 0 exactly), the student's derivative.
        return grad + (part - part.detach())


def _distill_result(preds_S: Tensor,
                    loss: Tensor,
                    grad: Optional[Tensor],
                    scale: Tensor,
                    calibrated: Tensor,
                    valid: Tensor,
                    ignore_index: Optional[int],
                    student_gradient: Optional[Callable[[Tensor],
                                                        Tensor]] = None,
                    loss_name: str = '') -> DistillLoss:
    """Attach the precomputed student gradient and flatten the details.

    ``student_gradient(preds_S)`` is the student-dependent part of ``grad``
    as a differentiable function, for double backward.
    """
    if grad is not None:
        if grad.shape != preds_S.shape:
            grad = grad.view(preds_S.shape)
        if grad.dtype != preds_S.dtype:
            grad = grad.to(preds_S.dtype)
        student = None
        # Dynamo's check (one Python call where is_compiling() makes two):
        # dynamo cannot trace the weak reference.
        if (student_gradient is not None
                and not torch.compiler.is_dynamo_compiling()):
            student = _StudentLogits(preds_S, student_gradient, loss_name)
        # The rest enters in a tuple: autograd sees the student logits as
        # its one tensor input, so forward may return the loss as it is
        # instead of a copy, and has one input to process.
        loss = _PrecomputedGradient.apply(preds_S, (loss, grad, student))
    calibrated = calibrated.view(-1)
    if ignore_index is not None:
        calibrated = calibrated & valid
    return DistillLoss(loss, scale.view(-1), calibrated, valid)


class _PrecomputedGradient(torch.autograd.Function):
    """A scalar loss whose gradient w.r.t. ``preds`` is already known."""

    @staticmethod
    def forward(ctx, preds: Tensor,
                rest: tuple[Tensor, Tensor, Optional[_StudentLogits]]
                ) -> Tensor:
        loss, grad, ctx.student = rest
        # Freed after backward unless the graph is retained.
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        grad, = ctx.saved_tensors
        # Grad mode is on in backward exactly under create_graph=True.
        if torch.is_grad_enabled() and ctx.student is not None:
            grad = ctx.student.differentiable(grad)
        if grad_loss.dtype != grad.dtype:
            grad_loss = grad_loss.to(grad.dtype)
        return grad * grad_loss, None
