"""Input checks and the shared first steps of the distillation losses."""
from __future__ import annotations

import functools
import itertools
from typing import NoReturn, Optional

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
    A soft label holding NaN names no class: it is refused like a label
    outside the classes (the argmax of NaN would pick one silently).

    Args:
        logits (Tensor): logits of shape (..., C).
        target (Tensor): hard labels of shape (...) with an integer dtype, or
            soft labels of shape (..., C) with a floating dtype.
        ignore_index (int, optional): label value to leave out of the mean.
        check_range (bool): refuse labels outside [0, C) that are not
            ``ignore_index``: a ``ValueError`` naming the label for CPU
            tensors in eager mode; on other devices and inside
            ``torch.compile`` a device-side assertion, without a host
            synchronisation, that fails at a later synchronisation with a
            ``RuntimeError``. Turn it off only for labels you trust.

    Returns:
        tuple[Tensor, Tensor]: labels (M,) with ignored entries set to 0, and
        the bool mask (M,) of kept samples.
    """
    labels, valid = _flat_labels(logits, target, ignore_index)
    if check_range and labels.numel():
        _check_label_range(labels, logits.shape[-1], ignore_index,
                           _is_soft(logits, target))
    return labels, valid


def _is_soft(logits: Tensor, target: Tensor) -> bool:
    """Whether ``target`` holds soft labels (one probability per class)."""
    return target.shape == logits.shape and target.is_floating_point()


def _flat_labels(logits: Tensor, target: Tensor,
                 ignore_index: Optional[int]) -> tuple[Tensor, Tensor]:
    """:func:`prepare_targets` without the range check."""
    soft = False
    # The common case first: every check skipped saves time at small
    # batches.
    if target.dtype == torch.int64 and target.shape == logits.shape[:-1]:
        labels = target
    elif _is_soft(logits, target):
        soft = True
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
    if labels.dim() != 1:
        labels = labels.reshape(-1)
    if ignore_index is None:
        valid = torch.ones_like(labels, dtype=torch.bool)
    else:
        valid = labels != ignore_index
        labels = labels * valid  # ignored samples point at class 0
    if soft:
        # -1 is outside every range: the check, or the gather of the loss
        # without it, refuses the sample.
        labels = labels.masked_fill(target.isnan().any(-1).view(-1), -1)
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
        in_range = (labels >= 0).logical_and_(labels < num_classes).all()
        torch._assert_async(in_range, what)
        return
    low, high = torch.aminmax(labels)
    low, high = int(low), int(high)
    if low < 0 or high >= num_classes:
        if not soft:
            what = (f'label {low if low < 0 else high} is outside '
                    f'[0, {num_classes}) and is not ignore_index '
                    f'({ignore_index})')
        raise ValueError(what)


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


def _checked_targets(preds_S: Tensor,
                     preds_T: Tensor,
                     target: Tensor,
                     ignore_index: Optional[int],
                     check_range: bool,
                     gathers_labels: bool = False) -> tuple[Tensor, Tensor]:
    """:func:`check_logits`, then :func:`prepare_targets` for the student.

    ``gathers_labels``: the caller indexes the logits with the labels
    (``gather``) inside ``try``, and hands a ``RuntimeError`` of it to
    :func:`_refuse_labels`. On CPU in eager mode that index operation
    already fails for every label the range check refuses, so the check
    is left to it and costs nothing while the labels are fine.
    """
    check_logits(preds_S, preds_T)
    # is_cpu, not device.type: that makes a device object per call.
    if (gathers_labels and preds_S.is_cpu and target.is_cpu
            and not torch.compiler.is_compiling()):
        return _flat_labels(preds_S, target, ignore_index)
    return prepare_targets(preds_S, target, ignore_index, check_range)


def _refuse_labels(error: RuntimeError, logits: Tensor, target: Tensor,
                   labels: Tensor, ignore_index: Optional[int],
                   check_range: bool) -> NoReturn:
    """Raise the label check's ``ValueError`` for the labels that made
    ``error`` (a failed index operation, see :func:`_checked_targets`), or
    ``error`` itself if the check is off or finds nothing."""
    if check_range:
        _check_label_range(labels, logits.shape[-1], ignore_index,
                           _is_soft(logits, target))
    raise error


# Logits of these dtypes are computed in float32.
_FLOAT32_COMPUTED = (torch.float32, torch.float16, torch.bfloat16)


def _compute_dtype(*logits: Tensor) -> torch.dtype:
    """The dtype the losses compute and return in: float64 if any input is
    float64, else float32 (exp and log of a half-precision probability near
    0 or 1 would over/underflow)."""
    dtype = torch.float32
    for tensor in logits:
        if tensor.dtype not in _FLOAT32_COMPUTED:
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def _number(value: float, dtype: torch.dtype) -> float | Tensor:
    """``value`` as an operand of an operator on tensors of ``dtype``.

    An operator given a Python number wraps it in a new tensor on every
    call, a few microseconds each: a measurable share of a loss call at small
    N x C. A 0-dim CPU tensor of the operand's dtype, made once per value,
    combines with tensors of any device exactly as the number does (which
    is cast to their dtype) without that; one of another dtype would be cast
    on every call. Compiled, the number is a constant of the graph.
    """
    # Dynamo's own check: one Python call where is_compiling() makes two,
    # and a loss asks here several times per call.
    if torch.compiler.is_dynamo_compiling():
        return value
    return _number_tensor(value, dtype)


def _numbers(dtype: torch.dtype, *values: float) -> tuple:
    """:func:`_number` of each value, asking the compile check once."""
    if torch.compiler.is_dynamo_compiling():
        return values
    # map over the cached C function: no Python frame per value.
    return tuple(map(_number_tensor, values, itertools.repeat(dtype)))


@functools.lru_cache(maxsize=128)
def _number_tensor(value: float, dtype: torch.dtype) -> Tensor:
    # A normal tensor even if first asked for under inference mode: later
    # autograd calls may save it for backward.
    with torch.inference_mode(False):
        return torch.tensor(value, dtype=dtype)


def _log_softmax(preds: Tensor,
                 tau: float,
                 dtype: Optional[torch.dtype] = None) -> Tensor:
    """``log_softmax(preds / tau)`` over the last dimension as (M, C), in
    ``dtype`` (by default :func:`_compute_dtype` of ``preds``)."""
    return _log_softmaxes(tau, dtype or _compute_dtype(preds), preds)[0]


def _log_softmaxes(tau: float, dtype: torch.dtype,
                   *preds: Tensor) -> list[Tensor]:
    """:func:`_log_softmax` of each of ``preds``, the divisor made once."""
    divisor = None if tau == 1.0 else _number(tau, dtype)
    log_probs = []
    for logits in preds:
        logits = _as_rows(logits, dtype)
        if divisor is not None:
            logits = logits / divisor
        log_probs.append(logits.log_softmax(-1))
    return log_probs


def _as_rows(preds: Tensor, dtype: torch.dtype) -> Tensor:
    """``preds`` as (M, C) of ``dtype``; itself where it already is (a call
    that changes nothing still costs microseconds at small N x C)."""
    if preds.dim() != 2:
        preds = preds.reshape(-1, preds.shape[-1])
    return preds if preds.dtype == dtype else preds.to(dtype)


# A 0-dim CPU tensor mixes with logits of any float dtype on any device.
_ZERO = torch.zeros(())


def _kl_terms_(log_ratio: Tensor, probs: Tensor) -> Tensor:
    """``probs * log_ratio`` in the buffer of ``log_ratio``; 0 where
    ``probs`` is 0, whatever ``log_ratio`` is there (a class masked with
    -inf in both logits gives -inf - -inf), NaN where either is NaN."""
    return torch.where(probs.bool(), log_ratio, _ZERO,
                       out=log_ratio).mul_(probs)


def _sample_weights(valid: Tensor, ignore_index: Optional[int], tau: float,
                    dtype: torch.dtype) -> float | Tensor:
    """``tau**2 / (number of kept samples)`` per sample, 0 where ignored.

    A plain number when nothing can be ignored (the common case costs no
    tensor operation); otherwise an (M, 1) tensor of ``dtype``. Weighting by
    multiplication (rather than selecting rows) keeps NaNs of ignored rows
    visible, and an empty or fully ignored batch gives a zero loss.
    """
    if ignore_index is None:
        return tau**2 / max(valid.numel(), 1)
    count = valid.sum(dtype=dtype).clamp_min(1)
    return (valid * (tau**2 / count)).unsqueeze(-1)


def _weight_factors(weights: float | Tensor, tau: float,
                    dtype: torch.dtype) -> tuple:
    """For the weights of :func:`_sample_weights`: the factor of the summed
    terms and that of the student gradient, ``weights / tau``. A number
    gives both as operands of ``dtype`` (one compile check); per-sample
    weights give ``(None, weights / tau)``: they weight each term before the
    sum."""
    if isinstance(weights, Tensor):
        return None, _grad_factor(weights, tau, dtype)
    return _numbers(dtype, weights, weights / tau)


def _grad_factor(weights: float | Tensor,
                 tau: float,
                 dtype: torch.dtype,
                 coefficient: float = 1.0) -> float | Tensor:
    """``coefficient * weights / tau``: a factor of the student gradient
    w.r.t. the logits (computed in ``dtype``), for the weights of
    :func:`_sample_weights`."""
    if isinstance(weights, Tensor):
        return weights * (coefficient / tau)
    return _number(coefficient * weights / tau, dtype)
