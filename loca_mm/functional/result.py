"""What the distillation losses return, and how their gradient is attached."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor


class DistillLoss(NamedTuple):
    """Result of the distillation losses (:func:`loca_kd_loss`,
    :func:`dkd_loss`, :func:`chunked_distill_loss`).

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
