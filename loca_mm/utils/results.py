"""Collect the student top-1 of finished mmengine runs into a results table.

A run is an mmengine work directory: the config dumped as
``<work_dir>/<config name>.py`` and, for every start of the run (a resumed
run starts again), ``<work_dir>/<timestamp>/vis_data/scalars.json`` (the
LocalVisBackend's scalars, one JSON object per line) next to that start's
``config.py``. Validation lines hold the student's ``accuracy/top1`` with
the epoch as ``step``, and ``TeacherOnceValLoop``'s
``teacher/accuracy/top1``.

Runs of one config with different ``randomness.seed`` are the seeds of one
row; the row reports the last epoch's and the best epoch's top-1 (the DKD
and CRD tables report the best) as mean and sample standard deviation.
"""
import json
import math
import os
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from mmengine.config import Config

from .metafile import replace_table, results_table

STUDENT_KEY = 'accuracy/top1'
TEACHER_KEY = 'teacher/accuracy/top1'
# The value of a README cell and metafile status no run has filled yet.
NOT_TRAINED = 'not trained yet'


@dataclass
class Run:
    """One training run: its config name, seed and validation scores."""
    work_dir: str
    config: str
    seed: int
    student_top1: Dict[int, float]  # validation step (epoch) -> top-1
    teacher_top1: Optional[float]


@dataclass
class Stat:
    """Mean and sample standard deviation of ``n`` values."""
    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> 'Stat':
        n = len(values)
        mean = sum(values) / n
        var = sum((v - mean)**2 for v in values) / (n - 1) if n > 1 else 0.
        return cls(mean, math.sqrt(var), n)

    def __str__(self) -> str:
        if self.n == 1:
            return f'{self.mean:.2f}'
        return f'{self.mean:.2f} ± {self.std:.2f}'


@dataclass
class ConfigResult:
    """The seeds of one config, summarised."""
    config: str
    seeds: List[int]
    last_epochs: List[int]
    last: Stat
    best: Stat
    teacher: Optional[Stat]


def read_scalars(path: Path) -> List[dict]:
    """The records of an mmengine ``scalars.json`` (one JSON object per
    line); a line that is not one is a ValueError naming the file and line."""
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(
                    f'{path}, line {number}: not a JSON object ({error}); '
                    'the scalars file of this run is corrupt') from None
    return records


def _dumped_config_name(work_dir: Path) -> str:
    dumped = sorted(work_dir.glob('*.py'))
    if len(dumped) != 1:
        found = ', '.join(p.name for p in dumped) or 'none'
        raise ValueError(
            f'{work_dir}: expected one dumped config <config name>.py in '
            f'the work directory (mmengine writes it), found {found}')
    return dumped[0].stem


def read_run(work_dir: str) -> Run:
    """Read the config name, seed and validation top-1 of one work dir.

    Raises:
        FileNotFoundError: no ``<timestamp>/vis_data/scalars.json``, or a
            start without its ``config.py``.
        ValueError: a corrupt scalars file, no validation in it, no seed,
            or not exactly one dumped config.
    """
    root = Path(work_dir)
    starts = sorted(p.parent for p in root.glob('*/vis_data/scalars.json'))
    if not starts:
        raise FileNotFoundError(
            f'{root}: no <timestamp>/vis_data/scalars.json; is this an '
            'mmengine work directory with the LocalVisBackend on?')
    config = _dumped_config_name(root)
    student, teacher = {}, None
    # Timestamps sort in time order; a resumed start overrides the epochs
    # it validates again.
    for vis_data in starts:
        for record in read_scalars(vis_data / 'scalars.json'):
            if STUDENT_KEY in record:
                student[int(record['step'])] = float(record[STUDENT_KEY])
                if teacher is None and TEACHER_KEY in record:
                    teacher = float(record[TEACHER_KEY])
    if not student:
        raise ValueError(
            f'{root}: no {STUDENT_KEY!r} in '
            f'{", ".join(str(s / "scalars.json") for s in starts)}; '
            'the run never validated')
    dumped = starts[-1] / 'config.py'
    if not dumped.is_file():
        raise FileNotFoundError(f'{dumped}: missing; the seed of {root} is '
                                'read from it')
    seed = Config.fromfile(
        str(dumped), import_custom_modules=False).get('randomness',
                                                      {}).get('seed')
    if seed is None:
        raise ValueError(f'{dumped}: randomness.seed is not set; runs of a '
                         'config are told apart by their seed')
    return Run(str(root), config, int(seed), student, teacher)


def find_runs(paths: Sequence[str]) -> List[str]:
    """The work directories in ``paths``: each path is a run, or a folder
    searched for runs (``work_dirs/`` of a reproduction)."""
    runs = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise FileNotFoundError(f'{path}: no such work directory')
        if any(path.glob('*/vis_data')):
            runs.append(str(path))
            continue
        found = sorted({
            str(p.parents[2])
            for p in path.rglob('vis_data/scalars.json')
        })
        if not found:
            raise FileNotFoundError(
                f'{path}: no mmengine run in it (no '
                '<work_dir>/<timestamp>/vis_data/scalars.json)')
        runs.extend(found)
    return runs


def collect(paths: Sequence[str]) -> List[ConfigResult]:
    """Group the runs in ``paths`` by config and summarise their seeds.

    Raises:
        ValueError: two runs of a config with the same seed.
    """
    by_config: Dict[str, List[Run]] = defaultdict(list)
    for work_dir in find_runs(paths):
        run = read_run(work_dir)
        for other in by_config[run.config]:
            if other.seed == run.seed:
                raise ValueError(
                    f'{run.config}: seed {run.seed} twice, in '
                    f'{other.work_dir} and {run.work_dir}; one run per seed')
        by_config[run.config].append(run)
    results = []
    for config in sorted(by_config):
        runs = sorted(by_config[config], key=lambda r: r.seed)
        last_epochs = [max(r.student_top1) for r in runs]
        teacher = [r.teacher_top1 for r in runs if r.teacher_top1 is not None]
        results.append(
            ConfigResult(
                config=config,
                seeds=[r.seed for r in runs],
                last_epochs=last_epochs,
                last=Stat.of([
                    r.student_top1[e] for r, e in zip(runs, last_epochs)
                ]),
                best=Stat.of([max(r.student_top1.values()) for r in runs]),
                teacher=Stat.of(teacher) if teacher else None))
    return results


def markdown_table(results: Sequence[ConfigResult]) -> str:
    """One row per config: top-1 at the last and the best epoch (mean ±
    sample std over seeds), the seeds, the last epoch, the teacher's."""
    lines = [
        '| Config | Last top-1 | Best top-1 | Seeds | Last epoch | '
        'Teacher top-1 |', '| --- | --- | --- | --- | --- | --- |'
    ]
    for r in results:
        epochs = sorted(set(r.last_epochs))
        epoch = (str(epochs[0]) if len(epochs) == 1 else
                 f'{epochs[0]}-{epochs[-1]}')
        lines.append(f'| {r.config} | {r.last} | {r.best} | '
                     f'{r.best.n} ({", ".join(map(str, r.seeds))}) | '
                     f'{epoch} | {r.teacher or "-"} |')
    return '\n'.join(lines) + '\n'


# The README's results table and the columns the collector fills; the other
# columns are published numbers and are never written.
FILLED_COLLECTIONS = ('LoCa', 'DKD+LoCa')


def metafile_results(result: ConfigResult, dataset: str) -> list:
    """``Results`` of a metafile model in OpenMMLab's model-index schema."""
    return [{
        'Task': 'Image Classification',
        'Dataset': dataset,
        'Metrics': {
            'Top 1 Accuracy': round(result.best.mean, 2)
        },
    }]


def _layout_error(path: str, problem: str) -> ValueError:
    return ValueError(f'{path}: {problem}; the results updater expects the '
                      'layout of configs/distill/cifar100 and writes nothing')


def _is_filled(config: str) -> bool:
    """Whether the collector writes ``config``'s results (LoCa, DKD+LoCa)."""
    return config.startswith(('loca_', 'dkdloca_'))


class _IndentedDumper(yaml.SafeDumper):
    """Indent lists under their key, as OpenMMLab's metafiles do."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def update_metafile(metafile: str, results: Sequence[ConfigResult],
                    dataset: str) -> str:
    """The text of ``metafile`` with ``Results`` of the LoCa and DKD+LoCa
    models set from ``results`` (added where a model has none yet).

    Only those models' ``Results`` change; the file is parsed again
    afterwards to check that nothing else did.

    Raises:
        ValueError: not a ``Models`` metafile, a result whose config has no
            model in a LoCa collection, or a model block the updater cannot
            rewrite in place.
    """
    with open(metafile) as f:
        text = f.read()
    index = yaml.safe_load(text)
    if not isinstance(index, dict) or not isinstance(
            index.get('Models'), list):
        raise _layout_error(metafile, 'no top-level Models list')
    models = {m.get('Name'): m for m in index['Models']}
    lines = text.split('\n')
    expected = yaml.safe_load(text)
    for result in results:
        if not _is_filled(result.config):
            continue
        model = models.get(result.config)
        if model is None or model.get('In Collection') not in \
                FILLED_COLLECTIONS:
            raise _layout_error(
                metafile, f'no model {result.config} in collection '
                f'{" or ".join(FILLED_COLLECTIONS)}')
        new_results = metafile_results(result, dataset)
        _replace_results(lines, metafile, result.config, new_results)
        for entry in expected['Models']:
            if entry.get('Name') == result.config:
                entry['Results'] = new_results
    updated = '\n'.join(lines)
    if yaml.safe_load(updated) != expected:
        raise _layout_error(metafile, 'an in-place edit changed more than '
                            'Results')
    return updated


def _replace_results(lines: List[str], metafile: str, name: str,
                     results: list) -> None:
    """Set the ``Results:`` block of the model ``name`` in the metafile's
    ``lines``, adding it at the end of the model's block if it has none."""
    starts = [i for i, line in enumerate(lines)
              if line.strip() == f'- Name: {name}']
    if len(starts) != 1:
        raise _layout_error(metafile, f'model {name} is not one '
                            f'"- Name: {name}" line')
    begin = starts[0]
    item_indent = len(lines[begin]) - len(lines[begin].lstrip())
    end = begin + 1
    while end < len(lines) and (not lines[end].strip() or len(
            lines[end]) - len(lines[end].lstrip()) > item_indent):
        end += 1
    while end > begin + 1 and not lines[end - 1].strip():
        end -= 1  # blank lines after the block stay where they are
    keys = [
        i for i in range(begin + 1, end)
        if lines[i].lstrip().startswith('Results:')
    ]
    if len(keys) > 1:
        raise _layout_error(metafile, f'model {name} has two Results keys')
    indent = item_indent + 2
    if keys:
        key = keys[0]
        indent = len(lines[key]) - len(lines[key].lstrip())
        stop = key + 1
        # The old value: deeper lines, or list items at the key's indent.
        while stop < end and (len(lines[stop]) - len(lines[stop].lstrip())
                              > indent or
                              lines[stop].lstrip().startswith('- ')):
            stop += 1
    else:
        key = stop = end
    dumped = yaml.dump({'Results': results},
                       Dumper=_IndentedDumper,
                       sort_keys=False,
                       allow_unicode=True,
                       width=1000)
    lines[key:stop] = [
        ' ' * indent + line for line in dumped.rstrip('\n').split('\n')
    ]


def update_results_files(results: Sequence[ConfigResult], readme: str,
                         metafile: str, dataset: str) -> None:
    """Write the LoCa and DKD+LoCa results into ``metafile`` and render
    ``readme``'s table from it; both are checked before either is written.
    """
    metafile_text = update_metafile(metafile, results, dataset)
    # results_table reads a file and resolves config links from its folder:
    # render from the updated text staged beside the metafile.
    staged = osp.join(osp.dirname(osp.abspath(metafile)),
                      f'.{osp.basename(metafile)}.staged')
    try:
        with open(staged, 'w') as f:
            f.write(metafile_text)
        table = results_table(staged)
    finally:
        if osp.exists(staged):
            os.remove(staged)
    with open(readme, encoding='utf-8') as f:
        readme_text = replace_table(f.read(), table, readme)
    with open(metafile, 'w') as f:
        f.write(metafile_text)
    with open(readme, 'w', encoding='utf-8') as f:
        f.write(readme_text)
