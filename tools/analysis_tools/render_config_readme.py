"""Regenerate the results tables of the configs' READMEs from their metafiles.

    python tools/analysis_tools/render_config_readme.py [FOLDER ...] [--check]

FOLDER is a configs folder with a metafile.yml and a README.md holding the
table markers (default: every configs/distill/* folder that has both). The
metafile is the one place of the numbers (see the comment at its top); the
README's table between the markers is rewritten from it. ``--check`` only
reports stale tables and exits with 1 if there is one.
"""
import argparse
import glob
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # tools.analysis_tools, next to configs/

from tools.analysis_tools.metafile import render_readme  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'folders',
        nargs='*',
        help='configs folders (default: configs/distill/* with a metafile)')
    parser.add_argument(
        '--check',
        action='store_true',
        help='do not write; exit with 1 if a table is out of date')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    folders = args.folders or sorted(
        osp.dirname(path) for path in glob.glob(
            osp.join(REPO, 'configs', 'distill', '*', 'metafile.yml'))
        if osp.exists(osp.join(osp.dirname(path), 'README.md')))
    stale = []
    for folder in folders:
        metafile = osp.join(folder, 'metafile.yml')
        readme = osp.join(folder, 'README.md')
        for path in (metafile, readme):
            if not osp.isfile(path):
                sys.exit(f'render_config_readme: no {path}')
        if render_readme(metafile, readme, check=args.check):
            stale.append(readme)
            print(('out of date: ' if args.check else 'rewrote the table of ')
                  + readme)
    return 1 if args.check and stale else 0


if __name__ == '__main__':
    sys.exit(main())
