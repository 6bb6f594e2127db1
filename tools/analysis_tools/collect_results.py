"""Summarise finished runs as a markdown table of student top-1.

    python tools/analysis_tools/collect_results.py WORK_DIRS...
        [--out FILE.md] [--force] [--update-metafile]
        [--readme README.md] [--metafile metafile.yml]
    python tools/analysis_tools/collect_results.py --finished WORK_DIRS...

Each WORK_DIR is an mmengine work directory, or a folder searched for them
(e.g. ``work_dirs``). Only finished runs count: those that validated the
last epoch of their schedule; in a work directory, a fresh (not resumed)
start replaces the earlier ones. Runs of one config (the name of the config
dumped in the work directory) whose configs differ only in
``randomness.seed`` form one row: the top-1 of the last and of the best
epoch, mean ± sample std over the seeds, and the teacher's top-1; runs that
differ in other keys are separate rows, named by those keys' values. Under
the table, every start and run left out is listed with the reason.
``--update-metafile`` writes the LoCa and DKD+LoCa rows into the CIFAR-100
README's results table and metafile.yml (the best-epoch top-1, as the
published columns); other columns stay as they are, and a LoCa config with
runs of different settings is refused. ``--finished`` only prints those of
the WORK_DIRS (each a work directory, existing or not) whose run finished,
one a line (what ``tools/reproduce_cifar100.sh`` skips).
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # tools.analysis_tools, next to configs/

from tools.analysis_tools.results import (  # noqa: E402
    collect, finished, markdown_table, update_results_files)

CIFAR100 = osp.join(REPO, 'configs', 'distill', 'cifar100')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+', help='work directories')
    parser.add_argument('--out', help='also write the table to this file')
    parser.add_argument(
        '--force', action='store_true', help='overwrite an existing --out')
    parser.add_argument(
        '--update-metafile',
        action='store_true',
        help='write LoCa / DKD+LoCa results into --readme and --metafile')
    parser.add_argument(
        '--readme', default=osp.join(CIFAR100, 'README.md'),
        help='the README with the results table')
    parser.add_argument(
        '--metafile', default=osp.join(CIFAR100, 'metafile.yml'),
        help='the metafile of the configs')
    parser.add_argument(
        '--dataset', default='CIFAR-100', help='Dataset of the Results')
    parser.add_argument(
        '--finished',
        action='store_true',
        help='only print the work dirs whose run finished its schedule')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.finished:
        for work_dir in args.work_dirs:
            if finished(work_dir):
                print(work_dir)
        return
    if args.out and osp.exists(args.out) and not args.force:
        sys.exit(f'{args.out} exists; pass --force to overwrite it')
    collection = collect(args.work_dirs)
    table = markdown_table(collection.results, collection.left_out)
    print(table, end='')
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table)
    if args.update_metafile:
        update_results_files(collection.results, args.readme,
                             args.metafile, args.dataset)
        print(f'updated {args.readme} and {args.metafile}')


if __name__ == '__main__':
    main()
