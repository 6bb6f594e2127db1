from .dkd_loca_loss import DKDLoCaLoss
from .loca_loss import LoCaLoss

__all__ = ['LoCaLoss', 'DKDLoCaLoss']
