from .launch import (add_launcher_args, build_runner, export_local_rank,
                     prepare_distributed_env, release_process_group)

__all__ = [
    'add_launcher_args', 'build_runner', 'export_local_rank',
    'prepare_distributed_env', 'release_process_group'
]
