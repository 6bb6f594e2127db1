"""Launcher handling shared by ``tools/train.py`` and ``tools/test.py``.

OpenMMLab entry points start one process per device, either through
``torchrun`` (``--launcher pytorch``), slurm or MPI. Two details of mmengine
0.10.7 stop such a run on a machine without CUDA, and are fixed here on the
config, where the dumped config shows them:

* ``env_cfg.dist_cfg.backend`` defaults to ``'nccl'``, which needs CUDA;
  the CPU backend is ``'gloo'``.
* the Runner wraps the model in ``MMDistributedDataParallel`` with
  ``device_ids=[LOCAL_RANK]``; PyTorch refuses ``device_ids`` for a module
  on the CPU.

(mmengine's ``init_dist`` also selects a CUDA device unconditionally; that
part is fixed in :func:`loca_mm.compat.fix_cpu_init_dist`.)
"""
import argparse
import gc
import os

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

__all__ = [
    'add_launcher_args', 'export_local_rank', 'prepare_distributed_env'
]

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--cfg-options``, ``--launcher`` and ``--local-rank``.

    Args:
        parser (argparse.ArgumentParser): the entry point's parser.
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs merged '
        'into it, e.g. model.teacher_ckpt=teacher.pth '
        'train_dataloader.batch_size=16; lists as key="[a,b]", no spaces.')
    parser.add_argument(
        '--launcher',
        choices=LAUNCHERS,
        default='none',
        help='job launcher: none (one process), pytorch (torchrun, as in '
        'tools/dist_train.sh), slurm or mpi')
    # torch.distributed.launch passes --local-rank since PyTorch 2.0 and
    # --local_rank before; torchrun only sets the LOCAL_RANK variable.
    parser.add_argument(
        '--local-rank',
        '--local_rank',
        dest='local_rank',
        type=int,
        default=0,
        help='set by the launcher; do not pass it yourself')


def export_local_rank(args: argparse.Namespace) -> None:
    """Publish ``--local-rank`` as ``LOCAL_RANK`` unless the launcher did.

    Args:
        args (argparse.Namespace): parsed arguments with ``local_rank``.
    """
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))


def prepare_distributed_env(cfg: Config, launcher: str) -> None:
    """Set ``cfg.launcher`` and make a multi-process run work without CUDA.

    With CUDA, or with ``launcher='none'``, only the launcher is set. Without
    CUDA a distributed run gets the gloo backend and a model wrapper without
    ``device_ids`` (settings already in the config are kept, except a
    non-gloo backend, which cannot work there).

    Args:
        cfg (Config): the config, changed in place.
        launcher (str): one of ``'none'``, ``'pytorch'``, ``'slurm'``,
            ``'mpi'``.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {LAUNCHERS}, '
                         f'got {launcher!r}')
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        print_log(
            f"no CUDA device: using the gloo backend instead of "
            f"{dist_cfg.get('backend', 'nccl')!r}",
            logger='current')
        dist_cfg['backend'] = 'gloo'
    wrapper_cfg = cfg.get('model_wrapper_cfg') or {}
    wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
    # Explicit None: the Runner only adds [LOCAL_RANK] when the key is absent.
    wrapper_cfg['device_ids'] = None
    # The same default as the Runner's own wrapper: buffers (BN statistics)
    # stay per process, as on GPUs.
    wrapper_cfg.setdefault('broadcast_buffers', False)
    wrapper_cfg.setdefault('find_unused_parameters',
                           cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper_cfg


def build_runner(cfg: Config):
    """The config's own runner type if it names one, else mmengine's Runner.

    Args:
        cfg (Config): the merged config.

    Returns:
        Runner: the built runner.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def release_process_group() -> None:
    """Tear down a distributed run's process group before the interpreter
    exits; a no-op otherwise.

    Left to interpreter exit, the process group and the DDP wrapper that
    holds it are destroyed in no set order with the rest of the C++ state,
    and gloo's worker threads then abort a run that has finished its work
    ('terminate called without an active exception', exit code -6) now and
    then. Call it once the runner is no longer referenced: the collection
    below frees the runner (it sits in reference cycles) and its DDP
    wrapper first.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
