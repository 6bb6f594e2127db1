"""The LoCa losses' calibration statistics in mmengine's MessageHub, as
``train/loca_ratio`` and ``train/loca_scale``: published by
:class:`StrictSingleTeacherDistill` after each training iteration, or by
``LoCaLossHook`` once per log entry."""
from typing import List, Sequence

import torch
from mmengine.dist import all_reduce
from mmengine.logging import HistoryBuffer, MessageHub
from torch import nn

from loca_mm.functional import calibration_summary
from loca_mm.models.losses.base_calibrated_loss import BaseCalibratedLoss

STAT_KEYS = ('train/loca_ratio', 'train/loca_scale')


def calibrated_losses(model: nn.Module) -> List[BaseCalibratedLoss]:
    """The LoCa losses in ``model`` (``LoCaLoss``, ``DKDLoCaLoss``)."""
    return [
        module for module in model.modules()
        if isinstance(module, BaseCalibratedLoss)
    ]


def take_calibration_totals(
        losses: Sequence[BaseCalibratedLoss]) -> torch.Tensor:
    """The calibration counts of ``losses`` since they were last taken,
    summed over the losses and the processes, still on the device.

    Args:
        losses (Sequence[BaseCalibratedLoss]): losses that collect
            statistics, at least one.
    """
    counts = [loss.take_calibration_totals() for loss in losses]
    totals = sum(count.to(counts[0].device) for count in counts)
    all_reduce(totals, op='sum')
    return totals


def publish_calibration_stats(hub: MessageHub, totals: torch.Tensor) -> None:
    """Write ``train/loca_ratio`` and ``train/loca_scale`` of ``totals``
    (summed calibration counts) to ``hub``, reading them back once.

    Each scalar holds only its latest value, so whatever smoothing the
    LogProcessor applies, it logs the statistics of exactly the iterations
    that ``totals`` covers. Iterations without a calibrated sample have no
    mean ``s``: ``train/loca_scale`` is then removed rather than repeated.
    """
    summary = calibration_summary(totals)
    for key in STAT_KEYS:
        name = key.split('/', 1)[1]
        if name not in summary:
            hub.log_scalars.pop(key, None)
            continue
        if key not in hub.log_scalars:
            hub.log_scalars[key] = HistoryBuffer(max_length=1)
        hub.update_scalar(key, summary[name])
