"""Collect the student top-1 of finished mmengine runs into a results table.

A run is an mmengine work directory: the config dumped as
``<work_dir>/<config name>.py`` and, for every start of the run (a resumed
run starts again), ``<work_dir>/<timestamp>/vis_data/scalars.json`` (the
LocalVisBackend's scalars, one JSON object per line) next to that start's
``config.py``. Validation lines hold the student's ``accuracy/top1`` with
the epoch (the iteration for an iteration-based schedule) as ``step``, and
``TeacherOnceValLoop``'s ``teacher/accuracy/top1``.

What counts as a result:

* A start that does not resume (its config's ``resume`` is not set, or it
  began again at epoch 1) is a fresh run: it replaces the earlier starts in
  its work directory; a resumed start continues the run before it.
* A run counts only when it validated the last epoch (iteration) of its
  schedule, ``train_cfg.max_epochs`` (``max_iters``) of its last start.
* Runs of one config name whose configs are the same but for
  ``randomness.seed`` (and the per-run keys in :data:`PER_RUN_KEYS`) are
  the seeds of one row; runs that differ in other keys are separate rows,
  each named by the values of the keys that differ.

A row reports the last epoch's and the best epoch's top-1 (the DKD and CRD
tables report the best) as mean and sample standard deviation. Every start
or run left out is listed with the reason.
"""
import json
import math
import os
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml
from mmengine.config import Config

from .metafile import replace_table, results_table

STUDENT_KEY = 'accuracy/top1'
TEACHER_KEY = 'teacher/accuracy/top1'
# Config keys that differ between the seeds of one experiment without
# changing it: where a run writes, how it was started or resumed. A start
# that resumes also names its own checkpoint in ``load_from``.
PER_RUN_KEYS = ('randomness.seed', 'work_dir', 'resume', 'launcher',
                'experiment_name')


@dataclass
class LeftOut:
    """A start or run the table does not use, and why."""
    path: str
    reason: str


@dataclass
class Run:
    """One training run: its config name, seed, validation scores, the
    length of its schedule and its config's settings."""
    work_dir: str
    config: str
    seed: int
    student_top1: Dict[int, float]  # validation step (epoch) -> top-1
    teacher_top1: Optional[float]
    # The schedule's last epoch (or iteration), None if the config has none.
    schedule: Optional[int] = None
    unit: str = 'epoch'
    # The config, flattened to dotted keys, without the per-run keys.
    settings: Dict[str, str] = field(default_factory=dict)
    # Earlier starts in the work directory that a fresh start replaced.
    replaced: List[LeftOut] = field(default_factory=list)

    def unfinished(self) -> Optional[str]:
        """Why the run is not finished, None if it is."""
        if self.schedule is None:
            return ('its config has no train_cfg.max_epochs or max_iters: '
                    'the end of its schedule is unknown')
        if not self.student_top1:
            return (f'unfinished: never validated (schedule: '
                    f'{self.schedule} {self.unit}s)')
        last = max(self.student_top1)
        if last < self.schedule:
            return (f'unfinished: validated to {self.unit} {last} of '
                    f'{self.schedule}')
        return None


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
    # The settings that tell this row from other rows of the same config
    # name (``key=value``), empty when there is one.
    variant: List[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if not self.variant:
            return self.config
        return f'{self.config} ({", ".join(self.variant)})'


@dataclass
class Collection:
    """The rows of a table and what was left out of it."""
    results: List[ConfigResult]
    left_out: List[LeftOut]


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


def _flatten(value, prefix: str = '') -> Dict[str, str]:
    """A config's dicts as dotted keys -> the repr of their values."""
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f'{prefix}{key}.'))
        return flat
    return {prefix[:-1]: repr(value)}


def _start_config(vis_data: Path, root: Path) -> dict:
    dumped = vis_data / 'config.py'
    if not dumped.is_file():
        raise FileNotFoundError(f'{dumped}: missing; the settings of the '
                                f'starts of {root} are read from it')
    return Config.fromfile(
        str(dumped), import_custom_modules=False).to_dict()


def _is_fresh(config: dict, records: List[dict]) -> bool:
    """Whether a start began a new run: it did not resume, or it resumed
    nothing (its first training record is epoch 1)."""
    if not config.get('resume'):
        return True
    trained = [r for r in records if STUDENT_KEY not in r and 'epoch' in r]
    return bool(trained) and int(trained[0]['epoch']) == 1


def _schedule(config: dict) -> Tuple[Optional[int], str]:
    train_cfg = config.get('train_cfg') or {}
    for key, unit in (('max_epochs', 'epoch'), ('max_iters', 'iteration')):
        if train_cfg.get(key) is not None:
            return int(train_cfg[key]), unit
    return None, 'epoch'


def read_run(work_dir: str) -> Run:
    """Read the config name, seed, validation top-1, schedule and settings
    of one work dir, from its latest fresh start and the starts that resume
    it (:class:`Run` lists the starts it replaced).

    Raises:
        FileNotFoundError: no ``<timestamp>/vis_data/scalars.json``, or a
            start without its ``config.py``.
        ValueError: a corrupt scalars file, no seed, or not exactly one
            dumped config.
    """
    root = Path(work_dir)
    # Timestamps sort in time order.
    starts = sorted(p.parent for p in root.glob('*/vis_data/scalars.json'))
    if not starts:
        raise FileNotFoundError(
            f'{root}: no <timestamp>/vis_data/scalars.json; is this an '
            'mmengine work directory with the LocalVisBackend on?')
    name = _dumped_config_name(root)
    read = [(vis_data, _start_config(vis_data, root),
             read_scalars(vis_data / 'scalars.json')) for vis_data in starts]
    first = max(i for i, (_, config, records) in enumerate(read)
                if i == 0 or _is_fresh(config, records))
    replaced = [
        LeftOut(str(vis_data.parent),
                f'replaced by the fresh start {read[first][0].parent.name}')
        for vis_data, _, _ in read[:first]
    ]
    student, teacher = {}, None
    # A resumed start overrides the epochs it validates again.
    for _, _, records in read[first:]:
        for record in records:
            if STUDENT_KEY in record:
                student[int(record['step'])] = float(record[STUDENT_KEY])
                if teacher is None and TEACHER_KEY in record:
                    teacher = float(record[TEACHER_KEY])
    last_vis_data, config, _ = read[-1]
    seed = (config.get('randomness') or {}).get('seed')
    if seed is None:
        raise ValueError(f'{last_vis_data / "config.py"}: randomness.seed is '
                         'not set; runs of a config are told apart by their '
                         'seed')
    schedule, unit = _schedule(config)
    if config.get('resume'):
        config = dict(config, load_from=None)  # the run's own checkpoint
    settings = {
        key: value
        for key, value in _flatten(config).items()
        if not any(
            key == k or key.startswith(k + '.') for k in PER_RUN_KEYS)
    }
    return Run(str(root), name, int(seed), student, teacher, schedule, unit,
               settings, replaced)


def finished(work_dir: str) -> bool:
    """Whether ``work_dir`` holds a run that finished its schedule (False
    for a folder without a readable run)."""
    try:
        return read_run(work_dir).unfinished() is None
    except (FileNotFoundError, ValueError):
        return False


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


def _variants(runs: List[Run]) -> List[Tuple[List[str], List[Run]]]:
    """The runs of one config name grouped by their settings, each group
    with the ``key=value`` settings that tell it from the others."""
    groups: Dict[tuple, List[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(sorted(run.settings.items())), []).append(run)
    if len(groups) == 1:
        return [([], runs)]
    settings = [dict(key) for key in groups]
    keys = sorted({k for s in settings for k in s})
    differing = [
        k for k in keys if len({s.get(k, '<unset>') for s in settings}) > 1
    ]
    return [([f'{k}={s.get(k, "<unset>")}' for k in differing], group)
            for s, group in zip(settings, groups.values())]


def _summary(config: str, variant: List[str],
             runs: List[Run]) -> ConfigResult:
    runs = sorted(runs, key=lambda r: r.seed)
    for run, other in zip(runs, runs[1:]):
        if other.seed == run.seed:
            raise ValueError(
                f'{config}: seed {run.seed} twice, in {run.work_dir} and '
                f'{other.work_dir}; one run per seed')
    last_epochs = [max(r.student_top1) for r in runs]
    teacher = [r.teacher_top1 for r in runs if r.teacher_top1 is not None]
    return ConfigResult(
        config=config,
        seeds=[r.seed for r in runs],
        last_epochs=last_epochs,
        last=Stat.of([r.student_top1[e] for r, e in zip(runs, last_epochs)]),
        best=Stat.of([max(r.student_top1.values()) for r in runs]),
        teacher=Stat.of(teacher) if teacher else None,
        variant=variant)


def collect(paths: Sequence[str]) -> Collection:
    """Group the finished runs in ``paths`` by config and settings, and
    summarise their seeds.

    Raises:
        ValueError: two runs of one row with the same seed.
    """
    by_config: Dict[str, List[Run]] = defaultdict(list)
    left_out = []
    for work_dir in find_runs(paths):
        run = read_run(work_dir)
        left_out.extend(run.replaced)
        reason = run.unfinished()
        if reason:
            left_out.append(LeftOut(run.work_dir, reason))
            continue
        by_config[run.config].append(run)
    results = [
        _summary(config, variant, runs) for config in sorted(by_config)
        for variant, runs in _variants(by_config[config])
    ]
    return Collection(results, left_out)


def markdown_table(results: Sequence[ConfigResult],
                   left_out: Sequence[LeftOut] = ()) -> str:
    """One row per config: top-1 at the last and the best epoch (mean ±
    sample std over seeds), the seeds, the last epoch, the teacher's; then
    the starts and runs left out, with the reason."""
    lines = [
        '| Config | Last top-1 | Best top-1 | Seeds | Last epoch | '
        'Teacher top-1 |', '| --- | --- | --- | --- | --- | --- |'
    ]
    for r in results:
        epochs = sorted(set(r.last_epochs))
        epoch = (str(epochs[0]) if len(epochs) == 1 else
                 f'{epochs[0]}-{epochs[-1]}')
        lines.append(f'| {r.label} | {r.last} | {r.best} | '
                     f'{r.best.n} ({", ".join(map(str, r.seeds))}) | '
                     f'{epoch} | {r.teacher or "-"} |')
    if left_out:
        lines += ['', 'Left out:', '']
        lines += [f'- {item.path}: {item.reason}' for item in left_out]
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
            model in a LoCa collection, a config with runs of different
            settings (which would be its result is not known), or a model
            block the updater cannot rewrite in place.
    """
    for result in results:
        if result.variant and _is_filled(result.config):
            keys = [setting.split('=')[0] for setting in result.variant]
            raise ValueError(
                f'{result.config}: its runs differ in {", ".join(keys)}; '
                'collect the runs of one setting to update the metafile '
                '(nothing written)')
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
