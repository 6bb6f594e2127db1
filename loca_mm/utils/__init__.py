from .launch import (add_launcher_args, build_runner, export_local_rank,
                     prepare_distributed_env, release_process_group)
from .model_config import resolve_model_config
from .setup_env import register_all_modules

__all__ = [
    'add_launcher_args', 'build_runner', 'export_local_rank',
    'prepare_distributed_env', 'register_all_modules', 'release_process_group',
    'resolve_model_config'
]
