"""The calibration statistics every front end logs: how often LoCa changed
the teacher (``loca_ratio``) and by how much (``loca_scale``)."""
from __future__ import annotations

import torch
from torch import Tensor

from .result import DistillLoss


def calibration_counts(result: DistillLoss) -> Tensor:
    """Sums to accumulate over iterations, kept on the loss's device.

    Args:
        result (DistillLoss): output of a functional loss.

    Returns:
        Tensor: float (3,) of the number of valid samples, the number of
        calibrated ones and the sum of ``s`` over the calibrated ones. The
        counts of several batches (or processes) add up to those of their
        union.
    """
    return calibration_counts_of(result.scale, result.calibrated, result.valid)


def calibration_counts_of(scale: Tensor, calibrated: Tensor,
                          valid: Tensor) -> Tensor:
    """:func:`calibration_counts` from the per-sample details of a result,
    or of several results concatenated (one reduction for all of them).

    Args:
        scale (Tensor): ``s`` per sample (M,).
        calibrated (Tensor): bool mask (M,) of the calibrated samples.
        valid (Tensor): bool mask (M,) of the samples that are not ignored.

    Returns:
        Tensor: float (3,), as :func:`calibration_counts`.
    """
    scale = scale.detach()
    # One (3, M) reduction, the masks promoted to scale's dtype by stack:
    # each operator call is what costs at small M.
    counts = torch.stack((valid, calibrated, scale * calibrated)).sum(-1)
    return counts if counts.dtype == torch.float32 else counts.float()


def calibration_summary(counts: Tensor) -> dict[str, float]:
    """``loca_ratio`` and ``loca_scale`` from summed :func:`calibration_counts`.

    ``loca_ratio`` is the fraction of valid samples that were calibrated;
    ``loca_scale`` the mean ``s`` over the calibrated samples, left out when
    there were none (a mean over nothing, and 1 would pull a smoothed value
    towards "no change"). Reads the counts back to the host once.

    Args:
        counts (Tensor): a sum of :func:`calibration_counts`.

    Returns:
        dict[str, float]: ``{'loca_ratio': ..., ['loca_scale': ...]}``.
    """
    num_valid, num_calibrated, scale_sum = counts.tolist()
    summary = {'loca_ratio': num_calibrated / max(num_valid, 1.0)}
    if num_calibrated > 0:
        summary['loca_scale'] = scale_sum / num_calibrated
    return summary
