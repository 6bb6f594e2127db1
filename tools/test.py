"""Evaluate a checkpoint on the test set of a config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

CONFIG may be a distillation config with a checkpoint saved by its training
run (the student is evaluated), or a student checkpoint made by
``tools/model_converters/convert_kd_ckpt_to_student.py`` with the student's
config or with the distillation config (it is loaded into the student). A
checkpoint that does not fit is refused, naming the keys.
"""
import argparse
import os.path as osp

# loca_mm first, for the same reasons as in tools/train.py.
import loca_mm  # noqa: F401,I001
from loca_mm.utils import (add_launcher_args, build_runner,
                           export_local_rank, prepare_distributed_env,
                           release_process_group)
import mmengine
from mmengine.config import Config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (path or URL)')
    parser.add_argument(
        '--work-dir',
        help='directory for the evaluation log (default: '
        './work_dirs/<config name>)')
    parser.add_argument(
        '--out',
        help='also write the metrics to this file (.json, .yaml or .pkl)')
    add_launcher_args(parser)
    args = parser.parse_args()
    export_local_rank(args)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line arguments to the config."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    # main() loads the checkpoint itself, strictly.
    cfg.load_from = None
    cfg.resume = False
    if cfg.model.get('teacher_ckpt') and str(cfg.model.get(
            'type')).split('.')[-1] == 'StrictSingleTeacherDistill':
        # A distillation checkpoint holds the teacher's weights too, and
        # main() loads them strictly into the whole model: fetching the
        # teacher's release again would only cost a download.
        cfg.model.teacher_ckpt = None
        cfg.model.allow_random_teacher = True
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    prepare_distributed_env(cfg, args.launcher)
    return cfg


def main() -> None:
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = build_runner(cfg)
    # Strictly: mmengine loads `load_from` with strict=False, so a checkpoint
    # of another model would load nothing and be evaluated with random
    # weights.
    runner.load_checkpoint(args.checkpoint, strict=True)
    metrics = runner.test()
    del runner  # before the process group it holds
    if args.out:
        mmengine.dump(metrics, args.out)
    release_process_group()


if __name__ == '__main__':
    main()
