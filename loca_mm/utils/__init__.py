from .launch import (add_launcher_args, export_local_rank,
                     prepare_distributed_env)

__all__ = ['add_launcher_args', 'export_local_rank', 'prepare_distributed_env']
