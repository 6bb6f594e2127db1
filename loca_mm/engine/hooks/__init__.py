from .loca_loss_hook import LoCaLossHook, publish_calibration_stats

__all__ = ['LoCaLossHook', 'publish_calibration_stats']
