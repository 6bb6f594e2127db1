"""Checkpoint converters from other codebases to loca_mm's models."""
from .repdistiller import (ZOO_MODELS, CheckpointMismatchError,
                           convert_repdistiller_checkpoint,
                           convert_repdistiller_state_dict, extract_state_dict)

__all__ = [
    'ZOO_MODELS', 'CheckpointMismatchError', 'convert_repdistiller_checkpoint',
    'convert_repdistiller_state_dict', 'extract_state_dict'
]
