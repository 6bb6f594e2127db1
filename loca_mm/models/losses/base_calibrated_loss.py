"""What the LoCa losses share: flags, calibration statistics, the weight."""
from typing import Optional

from mmengine.logging import HistoryBuffer, MessageHub
from torch import Tensor, nn

from loca_mm.functional import (DistillLoss, calibration_counts,
                                calibration_summary)

# mmengine's HistoryBuffer copies its whole history on every update
# (np.append), so an unbounded one costs O(iterations) per iteration: 4 us
# at 1k values, 9 us at 10k, 0.4 ms at 100k. The calibration scalars keep
# the last 1000, far more than the LogProcessor smooths over (10 iterations
# by default).
STATS_HISTORY_LENGTH = 1000


def _update_scalar(hub: MessageHub, key: str, value: float) -> None:
    if key not in hub.log_scalars:
        hub.log_scalars[key] = HistoryBuffer(max_length=STATS_HISTORY_LENGTH)
    hub.update_scalar(key, value)


def log_calibration_stats(result: DistillLoss) -> None:
    """Send how often LoCa changed the teacher, and how much, to MessageHub.

    ``train/loca_ratio`` and ``train/loca_scale`` are those of
    :func:`loca_mm.functional.calibration_summary` for this batch
    (``loca_scale`` is skipped in an iteration with no calibrated sample, so
    the smoothed value is not pulled towards 1). mmengine's LogProcessor
    prints every ``train/`` scalar and forwards it to the visualizer
    backends. Both keep their last :data:`STATS_HISTORY_LENGTH` values.

    The counts are read back together: one device synchronisation per call.
    The losses take ``log_stats=False`` to skip it.

    Args:
        result (DistillLoss): output of a functional loss.
    """
    hub = MessageHub.get_current_instance()
    summary = calibration_summary(calibration_counts(result))
    for name, value in summary.items():
        _update_scalar(hub, f'train/{name}', value)


class BaseCalibratedLoss(nn.Module):
    """Base of the registered LoCa losses (thin adapters of the functional
    core).

    Args:
        tau (float): temperature.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'``.
        loss_weight (float): weight of the loss.
        ignore_index (int, optional): label left out of the batch mean.
        check_labels (bool): raise on labels outside [0, C). Costs one
            device synchronisation per call on GPU.
        log_stats (bool): log ``loca_ratio``/``loca_scale`` to MessageHub
            during training (one synchronisation).
    """

    def __init__(self, tau: float, calibrate: str, loss_weight: float,
                 ignore_index: Optional[int], check_labels: bool,
                 log_stats: bool) -> None:
        super().__init__()
        self.tau = tau
        self.calibrate = calibrate
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self.check_labels = check_labels
        self.log_stats = log_stats

    def weighted(self, result: DistillLoss, factor: float = 1.0) -> Tensor:
        """Log the calibration statistics and weight the loss.

        Args:
            result (DistillLoss): output of a functional loss.
            factor (float): a further weight (DKD's warm-up).

        Returns:
            Tensor: ``factor * loss_weight * result.loss``.
        """
        if self.log_stats and self.training and self.calibrate != 'none':
            log_calibration_stats(result)
        weight = factor * self.loss_weight
        # Multiplying by 1 changes nothing but adds an autograd node, a
        # measurable share of the loss's time at small N x C.
        return result.loss if weight == 1.0 else weight * result.loss
