"""How often does a teacher mis-instruct its students, and what would LoCa do?

    python tools/analysis_tools/misinstruction.py CONFIG CHECKPOINT
        [--out-dir DIR] [--tau T] [--alpha A] [--calibrate {wrong,margin}]
        [--passes N] [--seed S] [--num-examples K] [--device DEV]
        [--cfg-options k=v ...]

The teacher sees the training split through the *training* pipeline (the
augmented images a student is distilled on), as many times as ``--passes``
says. A sample is mis-instructed when the label is not the teacher's strict
top-1 (LoCa's ``'wrong'`` rule: a tie counts as wrong). Reported: the rate
overall and per class, the distribution of LoCa's scale ``s`` over the
samples LoCa changes, and a figure of some mis-instructed samples' teacher
distributions before and after calibration
(:mod:`loca_mm.analysis.misinstruction`).

CONFIG is a distillation config (its teacher network, teacher preprocessing,
and the LoCa settings of its loss are used) or a classifier's own training
config. Outputs in ``--out-dir`` (default ``work_dirs/misinstruction``):
``misinstruction.json``, ``misinstruction.png`` (per-class rates and the
histogram of ``s``) and ``calibration_examples.png``.
"""
import argparse
from typing import Optional, Sequence

# loca_mm first: it repairs the stack for current PyTorch.
from loca_mm.analysis.misinstruction import (summary_text,  # noqa: I001
                                             measure_misinstruction)
from mmengine.config import DictAction


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure a teacher's mis-instruction rate on the "
        'augmented training split and the LoCa calibration it would get')
    parser.add_argument('config', help='distillation or classifier config')
    parser.add_argument(
        'checkpoint',
        help="the teacher's checkpoint, or a checkpoint of a distillation "
        'run (its teacher.* weights are used)')
    parser.add_argument(
        '--out-dir',
        default='work_dirs/misinstruction',
        help='where to write the JSON and the figures')
    parser.add_argument(
        '--tau',
        type=float,
        help="temperature (default: the config's LoCa loss, else 4)")
    parser.add_argument(
        '--alpha',
        type=float,
        help="LoCa's alpha (default: the config's LoCa loss, else 0.9)")
    parser.add_argument(
        '--calibrate',
        choices=['wrong', 'margin'],
        help="LoCa's mode (default: the config's, 'wrong' if the config "
        'does not calibrate)')
    parser.add_argument(
        '--passes',
        type=int,
        default=1,
        help='passes over the training split (each with new augmentation)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the augmentation')
    parser.add_argument(
        '--num-examples',
        type=int,
        default=6,
        help='mis-instructed samples drawn in calibration_examples.png')
    parser.add_argument(
        '--device',
        default='cpu',
        help="where the teacher runs (e.g. 'cuda'); default: cpu")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error('--passes must be >= 1')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    summary = measure_misinstruction(
        args.config,
        args.checkpoint,
        args.out_dir,
        tau=args.tau,
        alpha=args.alpha,
        calibrate=args.calibrate,
        passes=args.passes,
        seed=args.seed,
        num_examples=args.num_examples,
        cfg_options=args.cfg_options,
        device=args.device)
    print(summary_text(summary))
    print(f'written to {args.out_dir}')
    return summary


if __name__ == '__main__':
    main()
