"""The calibration statistics every front end logs: how often LoCa changed
the teacher (``loca_ratio``) and by how much (``loca_scale``)."""
from __future__ import annotations

import torch
from torch import Tensor

from .losses import DistillLoss


def calibration_counts(result: DistillLoss) -> Tensor:
    """Counts to add up over iterations (and processes), on the loss's
    device.

    Args:
        result (DistillLoss): output of a functional loss.

    Returns:
        Tensor: float32 (3,): the number of valid samples, of calibrated
        ones, and the sum of ``s`` over the calibrated ones.
    """
    calibrated = result.calibrated.float()
    return torch.stack((result.valid.float().sum(), calibrated.sum(),
                        (result.scale.detach().float() * calibrated).sum()))


def calibration_summary(counts: Tensor) -> dict[str, float]:
    """``loca_ratio`` and ``loca_scale`` from summed
    :func:`calibration_counts`, read back to the host once.

    ``loca_ratio`` is the fraction of valid samples that were calibrated;
    ``loca_scale`` the mean ``s`` over the calibrated samples, left out when
    there were none (a mean over nothing).

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
