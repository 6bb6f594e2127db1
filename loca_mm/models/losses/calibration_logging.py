"""Report LoCa's per-iteration calibration statistics to mmengine."""
import torch
from mmengine.logging import MessageHub

from loca_mm.functional import DistillLoss


def log_calibration_stats(result: DistillLoss) -> None:
    """Send how often LoCa changed the teacher, and how much, to MessageHub.

    ``train/loca_ratio`` is the fraction of (non-ignored) samples whose
    teacher distribution was calibrated; ``train/loca_scale`` the mean scale
    ``s`` over those samples (skipped in an iteration with none, so the
    smoothed value is not pulled towards 1). mmengine's LogProcessor prints
    every ``train/`` scalar and forwards it to the visualizer backends.

    The three counts are read back together: one device synchronisation per
    call. The losses take ``log_stats=False`` to skip it.

    Args:
        result (DistillLoss): output of a functional loss.
    """
    calibrated = result.calibrated
    num_valid, num_calibrated, scale_sum = torch.stack([
        result.valid.sum().float(),
        calibrated.sum().float(),
        (result.scale.detach() * calibrated).sum(),
    ]).tolist()
    hub = MessageHub.get_current_instance()
    hub.update_scalar('train/loca_ratio', num_calibrated / max(num_valid, 1.0))
    if num_calibrated > 0:
        hub.update_scalar('train/loca_scale', scale_sum / num_calibrated)
