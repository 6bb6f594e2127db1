"""The loca_mm demo: a teacher, a student and four distillation methods on
Fashion-MNIST, from the project's configs, in under 10 minutes on 2 CPU cores.

    python tools/demo/run_demo.py [--out-dir outputs/demo] [--jobs 2]
        [--work-root work_dirs/demo] [--cfg-options k=v ...]

It trains the teacher (all 60,000 training images, 2 epochs) and, on the
first 10,000 images for 3 epochs, the student alone and the student
distilled with KD, LoCa, DKD and DKD+LoCa, each run through
``tools/train.py``; it measures how often the teacher mis-instructs (its
top-1 is not the label) on the students' augmented training images. It ends
with a table of top-1 accuracies on the 10,000 test images
(``results.md``/``results.json``) and a plot (``results.png``) in
``--out-dir``. This is one seed of
``tools/benchmark/accuracy_fashion_mnist.py``; docs/benchmarks.md has the
study over seeds and with a weaker teacher.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
from typing import Optional, Sequence

BENCHMARK = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'benchmark',
    'accuracy_fashion_mnist.py')


def load_study():
    """The Fashion-MNIST study module, which runs and reports the demo."""
    spec = importlib.util.spec_from_file_location('accuracy_fashion_mnist',
                                                  BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument('--work-root', default='work_dirs/demo')
    parser.add_argument(
        '--jobs', type=int, default=min(2,
                                        os.cpu_count() or 1))
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides for every run (e.g. a smaller test run)')
    args = parser.parse_args(argv)
    study = load_study()
    study_args = [
        '--seeds', '0', '--teachers', 'strong', '--methods', 'student', 'kd',
        'loca', 'dkd', 'dkdloca', '--jobs',
        str(args.jobs), '--out-dir', args.out_dir, '--work-root',
        args.work_root, '--title', 'loca_mm demo on Fashion-MNIST'
    ]
    if args.cfg_options:
        study_args += ['--cfg-options', *args.cfg_options]
    return study.main(study_args)


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
