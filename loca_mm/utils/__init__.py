from .checkpoint import (CheckpointMismatchError, DamagedCheckpointError,
                         UnsafeCheckpointError, load_checkpoint_file,
                         state_dict_of)
from .launch import (add_launcher_args, build_runner,
                     check_checkpoint_schedule, check_resume,
                     export_local_rank, prepare_distributed_env,
                     release_process_group)
from .model_config import resolve_model_config
from .setup_env import register_all_modules

__all__ = [
    'CheckpointMismatchError', 'DamagedCheckpointError',
    'UnsafeCheckpointError', 'load_checkpoint_file', 'state_dict_of',
    'add_launcher_args', 'build_runner', 'check_checkpoint_schedule',
    'check_resume', 'export_local_rank', 'prepare_distributed_env',
    'register_all_modules', 'release_process_group', 'resolve_model_config'
]
