"""Train a model (distillation or plain classification) from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--no-validate] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

Multi-process and multi-node runs: ``tools/dist_train.sh`` (torchrun) and
``tools/slurm_train.sh``.
"""
import argparse
import logging
import os.path as osp

# loca_mm first: it repairs the stack for current PyTorch and registers its
# losses, algorithms and backbones before any registry builds anything, so a
# config works with or without ``custom_imports``.
import loca_mm  # noqa: F401,I001
from loca_mm.utils import (add_launcher_args, build_runner,
                           check_checkpoint_schedule, export_local_rank,
                           prepare_distributed_env, release_process_group)
from mmengine.config import Config
from mmengine.logging import print_log


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--work-dir',
        help='directory for logs and checkpoints (default: '
        './work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume training: from the given checkpoint, or without a '
        'value from the latest checkpoint in the work directory (the one '
        'named in its last_checkpoint file); refused for iteration '
        'checkpoints in an epoch-based loop')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (GPU: float16; CPU: bfloat16)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size over '
        'the config\'s auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate during training')
    add_launcher_args(parser)
    args = parser.parse_args()
    export_local_rank(args)
    return args


def enable_amp(cfg: Config) -> None:
    """Switch the optimizer wrapper to mmengine's ``AmpOptimWrapper``."""
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type == 'AmpOptimWrapper':
        print_log(
            'AMP is already enabled in the config.',
            logger='current',
            level=logging.WARNING)
        return
    if wrapper_type != 'OptimWrapper':
        raise ValueError('--amp needs optim_wrapper.type OptimWrapper, got '
                         f'{wrapper_type!r}')
    from loca_mm.utils.amp import amp_optim_wrapper  # CPU: bfloat16
    cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line arguments to the config.

    ``--cfg-options`` is merged last, so it overrides everything else.
    """
    # work_dir priority: command line > config > config file name.
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.amp:
        enable_amp(cfg)

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr', {}).get('base_batch_size') is None:
            raise ValueError('--auto-scale-lr needs '
                             'auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    prepare_distributed_env(cfg, args.launcher)
    return cfg


def main() -> None:
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    # Before any work: a new run hears that its checkpoints could not be
    # resumed exactly, a resumed one is refused (build_runner checks the
    # checkpoint it resumes from).
    check_checkpoint_schedule(cfg)
    build_runner(cfg).train()
    release_process_group()


if __name__ == '__main__':
    main()
