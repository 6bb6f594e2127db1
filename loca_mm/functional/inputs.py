"""Input checks and the shared first steps of the distillation losses."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


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
