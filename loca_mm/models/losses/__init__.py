from .dkd_loca_loss import DKDLoCaLoss
from .loca_loss import LoCaLoss

__all__ = ['LoCaLoss', 'DKDLoCaLoss']
from .loca_calibrated_loss import LoCaCalibratedLoss  # noqa: E402
__all__.append('LoCaCalibratedLoss')
