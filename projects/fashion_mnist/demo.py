"""The loca_mm demo: a good and a weak teacher side by side on Fashion-MNIST,
each distilled into the same student with KD, LoCa, DKD and DKD+LoCa.

    python projects/fashion_mnist/demo.py [--out-dir outputs/demo] [--jobs 2]
        [--work-root work_dirs/demo] [--cfg-options k=v ...]

It is seed 0 of two teachers of the Fashion-MNIST study
(:mod:`projects.fashion_mnist.study`; README.md has the study over seeds and
seven teachers): the good teacher sees all 60,000 training images
for 2 epochs, the weak one 5,000 other images for 1 epoch; the student
trains on the first 2,000 images for 3 epochs, alone and distilled. It ends
with a table of top-1 accuracies on the 10,000 test images
(``results.md``/``results.json``) and a plot (``results.png``) in
``--out-dir``.
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

TEACHERS = ('strong', 'weak')
METHODS = ('student', 'kd', 'loca', 'dkd', 'dkdloca')
NOTE = ('Each column is one teacher, the same network trained on all 60,000 '
        'images for 2 epochs (left: good) or on 5,000 other images for 1 '
        'epoch (right: weak), and each cell the test top-1 of the student '
        'distilled from it (student alone: no teacher, the same in both), '
        'one seed.')


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument('--work-root', default='work_dirs/demo')
    parser.add_argument(
        '--jobs', type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides for every run (e.g. a smaller test run)')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f'--jobs must be >= 1, got {args.jobs}')
    summary = study.run(TEACHERS, METHODS, [0], args.work_root, args.jobs,
                        options=args.cfg_options)
    title = 'loca_mm demo on Fashion-MNIST: a good and a weak teacher'
    print('\n' + write_report(summary, args.out_dir, title, NOTE))
    print(f"{len(summary['runs'])} runs in {summary['wall_seconds']:.0f} s; "
          f'results in {args.out_dir}/')
    return summary


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
