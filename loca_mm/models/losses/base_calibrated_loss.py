"""What the LoCa losses share: flags, calibration statistics, the weight."""
from typing import Optional

import torch
from mmengine.logging import HistoryBuffer, MessageHub
from torch import Tensor, nn

from loca_mm.functional import DistillLoss

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

    ``train/loca_ratio`` is the fraction of (non-ignored) samples whose
    teacher distribution was calibrated; ``train/loca_scale`` the mean scale
    ``s`` over those samples (skipped in an iteration with none, so the
    smoothed value is not pulled towards 1). mmengine's LogProcessor prints
    every ``train/`` scalar and forwards it to the visualizer backends. Both
    keep their last :data:`STATS_HISTORY_LENGTH` values.

    The three counts are read back together: one device synchronisation per
    call. The losses take ``log_stats=False`` to skip it.

    Args:
        result (DistillLoss): output of a functional loss.
    """
    calibrated = result.calibrated
    num_valid, num_calibrated, scale_sum = torch.stack(
        (result.valid, calibrated,
         result.scale.detach() * calibrated)).sum(-1).tolist()
    hub = MessageHub.get_current_instance()
    _update_scalar(hub, 'train/loca_ratio',
                   num_calibrated / max(num_valid, 1.0))
    if num_calibrated > 0:
        _update_scalar(hub, 'train/loca_scale', scale_sum / num_calibrated)


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
