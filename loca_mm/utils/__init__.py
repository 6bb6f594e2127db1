from .checkpoint import (CheckpointMismatchError, DamagedCheckpointError,
                         UnsafeCheckpointError, load_checkpoint_file,
                         state_dict_of)
from .launch import (add_launcher_args, build_runner,
                     check_checkpoint_schedule, check_resume,
                     export_local_rank, prepare_distributed_env,
                     release_process_group)

__all__ = [
    'CheckpointMismatchError', 'DamagedCheckpointError',
    'UnsafeCheckpointError', 'load_checkpoint_file', 'state_dict_of',
    'add_launcher_args', 'build_runner', 'check_checkpoint_schedule',
    'check_resume', 'export_local_rank', 'prepare_distributed_env',
    'release_process_group'
]
