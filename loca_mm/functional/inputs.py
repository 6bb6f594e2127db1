"""Input checks and the first steps every distillation loss shares."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


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


def prepare_targets(logits: Tensor,
                    target: Tensor,
                    ignore_index: Optional[int] = None,
                    check_labels: bool = True) -> tuple[Tensor, Tensor]:
    """Flatten labels to (M,) and mark the samples that enter the loss.

    Soft labels (the shape of the logits, as Mixup/CutMix produce) are
    reduced to their argmax: LoCa needs one class to promote, and the
    dominant class of the mix is the one the soft cross-entropy pulls
    hardest. A soft label holding NaN names no class and is refused.

    Args:
        logits (Tensor): logits of shape (..., C).
        target (Tensor): integer labels (...), or soft labels (..., C).
        ignore_index (int, optional): label of samples left out of the mean.
        check_labels (bool): refuse labels outside [0, C) that are not
            ``ignore_index``: a ``ValueError`` naming the label for CPU
            tensors in eager mode; on other devices and inside
            ``torch.compile`` a device-side assertion (no host
            synchronisation) that raises a ``RuntimeError`` at the next
            synchronisation. Defaults to True.

    Returns:
        tuple[Tensor, Tensor]: labels (M,), ignored ones set to 0, and the
        bool mask (M,) of kept samples.
    """
    soft = target.shape == logits.shape and target.is_floating_point()
    if soft:
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
        labels = labels.masked_fill(~valid, 0)
    if soft:
        # After the ignore step, so that no ignore_index can hide it: -1 is
        # outside every range, refused below or by the loss's indexing.
        labels = labels.masked_fill(target.isnan().any(-1).reshape(-1), -1)
    if check_labels and labels.numel():
        _check_label_range(labels, logits.shape[-1], ignore_index, soft)
    return labels, valid


def _check_label_range(labels: Tensor, num_classes: int,
                       ignore_index: Optional[int], soft: bool) -> None:
    """Refuse labels outside [0, num_classes) (see :func:`prepare_targets`)."""
    what = ('a soft label holds NaN' if soft else
            f'a label is outside [0, {num_classes}) and is not ignore_index '
            f'({ignore_index})')
    if not labels.is_cpu or torch.compiler.is_compiling():
        # Reading the labels back would stall the device until it catches
        # up (and break a compiled graph); this assertion runs on it.
        in_range = ((labels >= 0) & (labels < num_classes)).all()
        torch._assert_async(in_range, what)
        return
    if torch._C._functorch.is_batchedtensor(labels):
        raise ValueError(
            'check_labels=True cannot read labels that a torch.func '
            'transform (vmap) maps over: check them before and pass '
            'check_labels=False')
    low, high = (int(value) for value in torch.aminmax(labels))
    if low < 0 or high >= num_classes:
        if not soft:
            what = (f'label {low if low < 0 else high} is outside '
                    f'[0, {num_classes}) and is not ignore_index '
                    f'({ignore_index})')
        raise ValueError(what)


def compute_dtype(*logits: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32: exp and log of a
    half-precision probability near 0 or 1 would over- or underflow."""
    dtype = torch.float32
    for tensor in logits:
        if tensor.dtype not in (torch.float16, torch.bfloat16):
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def check_standardize(standardize) -> None:
    """Raise TypeError unless ``standardize`` is True or False."""
    if not isinstance(standardize, bool):
        raise TypeError('standardize must be True or False, got '
                        f'{standardize!r}')


def standardize_logits(logits: Tensor) -> Tensor:
    """Logit Standardization (Sun et al., CVPR 2024) of logits (..., C):
    ``(z - mean) / (std + 1e-7)`` per row, ``std`` the unbiased standard
    deviation over the classes, in float32 (float64 for float64 logits).

    The statistics are taken over the finite entries of each row only, so
    a ``-inf`` column (a masked class) stays ``-inf`` and the other classes
    get what the row without it would give; NaN and ``+inf`` stay as they
    are (the loss shows NaN, as without standardization). A constant row
    (one finite class included) maps to 0; its gradient there is the
    formula's, 1e7 times the incoming one.
    """
    logits = logits.to(compute_dtype(logits))
    finite = logits.isfinite()
    count = finite.sum(-1, keepdim=True)
    # Masked entries enter the sums as 0 and are put back by the last
    # where: no inf meets an arithmetic step, so no NaN gradient either.
    mean = torch.where(finite, logits, 0.0).sum(-1, True) / count.clamp_min(1)
    centered = torch.where(finite, logits - mean, 0.0)
    variance = centered.square().sum(-1, True) / (count - 1).clamp_min(1)
    # The floor keeps sqrt's gradient finite on a constant row; it is far
    # below the 1e-7 that the formula adds.
    std = variance.clamp_min(1e-30).sqrt()
    return torch.where(finite, centered / (std + 1e-7), logits)


def log_softmax_rows(preds: Tensor, tau: float, dtype: torch.dtype,
                     standardize: bool = False) -> Tensor:
    """``log_softmax(preds / tau)`` as (M, C) rows of ``dtype``; with
    ``standardize``, of :func:`standardize_logits` of ``preds``."""
    rows = preds.reshape(-1, preds.shape[-1]).to(dtype)
    if standardize:
        rows = standardize_logits(rows)
    return torch.log_softmax(rows if tau == 1.0 else rows / tau, dim=-1)


def kl_rows(log_a: Tensor, log_b: Tensor) -> Tensor:
    """``KL(a || b)`` per row of log-probabilities (M, C).

    Classes with ``a = 0`` add nothing, also where ``log b`` is ``-inf``
    (a class masked in both); NaN in either stays NaN, and ``b = 0`` where
    ``a > 0`` gives ``inf``.
    """
    a = log_a.exp()
    return torch.where(a == 0, 0.0, a * (log_a - log_b)).sum(-1)


def batch_mean(per_sample: Tensor, valid: Tensor, tau: float) -> Tensor:
    """``tau**2`` times the mean of ``per_sample`` over the valid samples; 0
    (with a gradient) when there are none. Ignored samples are multiplied
    by 0, not dropped, so that a NaN in them still shows."""
    return tau**2 * (per_sample * valid).sum() / valid.sum().clamp_min(1)
