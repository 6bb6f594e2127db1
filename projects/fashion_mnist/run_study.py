"""Does LoCa help, and when? Student top-1 on Fashion-MNIST per teacher and
method, over paired seeds (:mod:`projects.fashion_mnist.study`).

    python projects/fashion_mnist/run_study.py [--seeds 0 1 2]
        [--teachers strong weak ...] [--methods student kd loca ...]
        [--student-images N] [--jobs 2] [--out-dir DIR] [--work-root DIR]
        [--reuse] [--title T] [--cfg-options k=v ...]

Outputs in ``--out-dir``: ``results.json`` (every run and the aggregates),
``results.md`` (tables), ``results.png`` (top-1 per method and teacher) and,
with several teachers, ``gain_curve.png`` and ``accuracy_curve.png``. A line
is fitted to the gains from three teachers on, with an interval over seeds
from two seeds on.
``--cfg-options`` is passed to every run (teachers and students), e.g. to
shrink a smoke test: ``train_cfg.max_epochs=1 param_scheduler.T_max=1``.
"""
import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

# The repository root: this project, its tools and (run without installing)
# this checkout's loca_mm are imported from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from projects.fashion_mnist import study  # noqa: E402
from projects.fashion_mnist.report import write_report  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Student top-1 on Fashion-MNIST per method and teacher, '
        'over seeds')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--teachers',
        nargs='+',
        choices=list(study.TEACHERS),
        default=list(study.STUDY_TEACHERS))
    parser.add_argument(
        '--methods',
        nargs='+',
        choices=list(study.METHODS),
        default=list(study.STUDY_METHODS))
    parser.add_argument(
        '--student-images',
        type=int,
        default=study.STUDENT_IMAGES,
        help='the students train on the first N training images')
    parser.add_argument(
        '--jobs',
        type=int,
        default=min(2, os.cpu_count() or 1),
        help='trainings run at once')
    parser.add_argument('--out-dir', default='outputs/study_fashion_mnist')
    parser.add_argument(
        '--work-root',
        default='work_dirs/study_fashion_mnist',
        help='parent of the runs\' work directories')
    parser.add_argument(
        '--reuse',
        action='store_true',
        help='keep runs finished earlier with the same config and options')
    parser.add_argument(
        '--title', default='Fashion-MNIST: student top-1 per teacher')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides for every run')
    args = parser.parse_args(argv)
    for name in ('jobs', 'student_images'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    summary = study.run(args.teachers, args.methods, args.seeds,
                        args.work_root, args.jobs, args.reuse,
                        args.cfg_options, args.student_images)
    print('\n' + write_report(summary, args.out_dir, args.title))
    print(f"{len(summary['runs'])} runs in {summary['wall_seconds']:.0f} s; "
          f'results in {args.out_dir}/')
    return summary


if __name__ == '__main__':
    main()
