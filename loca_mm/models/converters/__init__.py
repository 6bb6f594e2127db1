"""Checkpoint converters from other codebases to loca_mm's models."""
from .repdistiller import (ZOO_MODELS, convert_repdistiller_checkpoint,
                           convert_repdistiller_state_dict)

__all__ = [
    'ZOO_MODELS', 'convert_repdistiller_checkpoint',
    'convert_repdistiller_state_dict'
]
