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

Resuming is checked before the runner starts (:func:`check_resume`): mmengine
resumes an epoch-based loop at the start of the epoch, so iteration
checkpoints there cannot continue a run exactly; a damaged checkpoint is
named together with the one to resume from instead, and a file of weights
only (no training state) is named as such.
"""
import argparse
import gc
import logging
import os
import os.path as osp
import re
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from .checkpoint import (CheckpointMismatchError, DamagedCheckpointError,
                         UnsafeCheckpointError, load_checkpoint_file)

__all__ = [
    'LAUNCHERS', 'add_launcher_args', 'export_local_rank',
    'prepare_distributed_env', 'check_checkpoint_schedule', 'check_resume',
    'build_runner', 'release_process_group'
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


def _is_epoch_based(train_cfg: Optional[dict]) -> bool:
    """Whether ``train_cfg`` builds an ``EpochBasedTrainLoop`` (or a
    subclass), as mmengine's ``Runner.build_train_loop`` reads it."""
    if not train_cfg:
        return False
    if 'type' not in train_cfg:
        return bool(train_cfg.get('by_epoch', False))
    from mmengine.registry import LOOPS
    from mmengine.runner import EpochBasedTrainLoop
    loop = train_cfg['type']
    loop = LOOPS.get(loop) if isinstance(loop, str) else loop
    return isinstance(loop, type) and issubclass(loop, EpochBasedTrainLoop)


def _iteration_checkpoint_hooks(cfg: Config) -> List[str]:
    """Where the config asks for ``CheckpointHook(by_epoch=False)``."""
    found = []
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint and checkpoint.get('by_epoch', True) is False:
        found.append('default_hooks.checkpoint')
    for index, hook in enumerate(cfg.get('custom_hooks') or []):
        if str(hook.get('type')).split('.')[-1] == 'CheckpointHook' and \
                hook.get('by_epoch', True) is False:
            found.append(f'custom_hooks.{index}')
    return found


def check_checkpoint_schedule(cfg: Config) -> None:
    """Refuse to resume from iteration checkpoints in an epoch-based loop;
    warn when a new run would write them.

    mmengine's ``EpochBasedTrainLoop`` resumes at the start of the saved
    epoch, and an iteration checkpoint (``CheckpointHook(by_epoch=False)``)
    records the epochs completed, not the position inside one: the resumed
    run trains part of an epoch twice, goes past ``max_iters``, ends with
    other weights and never saves its last iteration.

    Args:
        cfg (Config): the merged config.

    Raises:
        ValueError: for ``resume`` with that combination.
    """
    hooks = _iteration_checkpoint_hooks(cfg)
    if not hooks or not _is_epoch_based(cfg.get('train_cfg')):
        return
    problem = (f'{" and ".join(hooks)} saves iteration checkpoints '
               '(by_epoch=False) but train_cfg is an epoch-based loop, '
               'which mmengine resumes at the start of the saved epoch: ')
    remedy = ('Save by epoch (by_epoch=True) in an epoch-based loop, or '
              'train with an iteration-based loop (train_cfg=dict('
              'by_epoch=False, max_iters=...)).')
    if cfg.get('resume'):
        raise ValueError(problem + 'resuming would train part of an epoch '
                         'again and past max_iters. ' + remedy)
    print_log(
        problem + 'a run resumed from these checkpoints would not continue '
        'exactly, so tools/train.py refuses to resume from them. ' + remedy,
        logger='current',
        level=logging.WARNING)


_NUMBERED_CHECKPOINT = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def _earlier_checkpoint(work_dir: str, checkpoint: str) -> Optional[str]:
    """The latest ``epoch_N.pth``/``iter_N.pth`` in ``work_dir`` saved
    before ``checkpoint`` (by its number), if any."""
    if not osp.isdir(work_dir):
        return None
    own = _NUMBERED_CHECKPOINT.match(osp.basename(checkpoint))
    limit = int(own.group(2)) if own else float('inf')
    numbered = []
    for name in os.listdir(work_dir):
        match = _NUMBERED_CHECKPOINT.match(name)
        path = osp.join(work_dir, name)
        if match and int(match.group(2)) < limit and \
                osp.abspath(path) != osp.abspath(checkpoint):
            numbered.append((int(match.group(2)), path))
    return max(numbered)[1] if numbered else None


def check_resume(cfg: Config) -> None:
    """Check what ``cfg.resume`` resumes from before training starts.

    Refuses iteration checkpoints in an epoch-based loop
    (:func:`check_checkpoint_schedule`). The checkpoint to resume from
    (``cfg.load_from``, else the one named in ``<work_dir>/last_checkpoint``)
    is read once: a damaged one is an error that names it and the earlier
    checkpoint to resume from with ``--resume PATH``; one without training
    state (only weights) is an error that names it. ``cfg.load_from`` is
    then set to it, so the runner resumes from the file checked.

    Args:
        cfg (Config): the merged config, with ``resume`` set.

    Raises:
        ValueError: see :func:`check_checkpoint_schedule`.
        DamagedCheckpointError: naming the damaged or missing checkpoint.
        CheckpointMismatchError: naming a checkpoint without training
            state.
    """
    from mmengine.runner import find_latest_checkpoint
    check_checkpoint_schedule(cfg)
    work_dir = cfg.get('work_dir') or '.'
    checkpoint = cfg.get('load_from')
    latest = checkpoint is None
    if latest:
        checkpoint = find_latest_checkpoint(work_dir)
        if checkpoint is None:  # mmengine starts afresh and logs it
            return
    if '://' in checkpoint:  # a remote file is read where it is fetched
        return
    try:
        loaded = load_checkpoint_file(checkpoint)
    except (DamagedCheckpointError, UnsafeCheckpointError,
            FileNotFoundError) as error:
        which = (f'the latest checkpoint of {work_dir} (named in '
                 f'{osp.join(work_dir, "last_checkpoint")})'
                 if latest else 'the checkpoint given to resume from')
        earlier = _earlier_checkpoint(work_dir, checkpoint)
        advice = (f'Resume from the checkpoint before it with --resume '
                  f'{earlier}' if earlier else
                  f'{work_dir} holds no earlier epoch_*/iter_* checkpoint: '
                  'start again without --resume, or resume from another '
                  'checkpoint with --resume PATH')
        raise DamagedCheckpointError(
            checkpoint, f'cannot resume: {checkpoint} is {which}. {error}\n'
            f'{advice}.') from None
    _check_training_state(loaded, checkpoint)
    cfg.load_from = checkpoint


def _check_training_state(checkpoint: object, filename: str) -> None:
    """Refuse to resume from a file without what mmengine's
    ``Runner.resume`` reads: ``meta`` with ``epoch`` and ``iter``, and
    ``message_hub`` (a weights-only file, e.g. a converted student or a
    released model, raised a bare ``KeyError`` there)."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    missing = [] if isinstance(meta, dict) else ['meta']
    missing += [f'meta.{key}' for key in ('epoch', 'iter')
                if isinstance(meta, dict) and key not in meta]
    if not (isinstance(checkpoint, dict) and 'message_hub' in checkpoint):
        missing.append('message_hub')
    if missing:
        raise CheckpointMismatchError(
            f'cannot resume from {filename}: it holds no training state to '
            f'resume (no {", ".join(missing)}), only weights: it was not '
            'saved by a training run\'s CheckpointHook (a file written by '
            'convert_kd_ckpt_to_student.py or a released model reads like '
            'this). To start a new run from its weights, drop --resume and '
            f'pass --cfg-options load_from={filename}.')


def build_runner(cfg: Config):
    """The config's own runner type if it names one, else mmengine's Runner.

    A config that resumes is checked first (:func:`check_resume`).

    Args:
        cfg (Config): the merged config.

    Returns:
        Runner: the built runner.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if cfg.get('resume'):
        check_resume(cfg)
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
