"""The configs' metafiles: the one place of each experiment's facts.

``configs/distill/<dataset>/metafile.yml`` (OpenMMLab's schema, described at
the top of each file) holds, per config, the teacher, student, learning rate,
DKD's beta (``NCKD Weight``), the published top-1 of the original
implementations and, once trained, this repository's result. The tests check
the configs against it, and the results table of the folder's README is
generated from it (:func:`render_readme`).
"""
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional

import yaml

NOT_TRAINED = 'not trained yet'
# The README columns of the distillation methods: the published top-1 of the
# baselines, this repository's results of the LoCa variants.
PUBLISHED_METHODS = ('KD', 'DKD')
TRAINED_METHODS = ('LoCa', 'DKD+LoCa')
METHODS = ('KD', 'LoCa', 'DKD', 'DKD+LoCa')
TABLE_BEGIN = ('<!-- results table: generated from metafile.yml by '
               'tools/analysis_tools/render_config_readme.py; edit the '
               'metafile, not the table -->')
TABLE_END = '<!-- end of the results table -->'


def load_models(metafile: str) -> List[dict]:
    """The ``Models`` entries of a metafile, in file order.

    Raises:
        ValueError: if an entry lacks Name, In Collection, Metadata or
            Config, or two entries share a Name.
    """
    with open(metafile, encoding='utf-8') as f:
        models = yaml.safe_load(f)['Models']
    seen = set()
    for entry in models:
        missing = [
            key for key in ('Name', 'In Collection', 'Metadata', 'Config')
            if key not in entry
        ]
        if missing:
            raise ValueError(f'{metafile}: entry {entry.get("Name")} lacks '
                             f'{", ".join(missing)}')
        if entry['Name'] in seen:
            raise ValueError(f'{metafile}: two entries named {entry["Name"]}')
        seen.add(entry['Name'])
    return models


def trained_top1(entry: dict) -> Optional[float]:
    """This repository's top-1 of a config, None while it is not trained.

    Raises:
        ValueError: if Results is present but is not one top-1 result on the
            entry's training data set.
    """
    results = entry.get('Results')
    if results is None:
        return None
    dataset = entry['Metadata']['Training Data']
    if (not isinstance(results, list) or len(results) != 1
            or results[0].get('Dataset') != dataset
            or not isinstance(
                results[0].get('Metrics', {}).get('Top 1 Accuracy'),
                (int, float))):
        raise ValueError(
            f'{entry["Name"]}: Results must be one result with Dataset '
            f'{dataset} and Metrics: Top 1 Accuracy (a number), got '
            f'{results}')
    return float(results[0]['Metrics']['Top 1 Accuracy'])


def distillation_pairs(models: List[dict]) -> Dict[tuple, Dict[str, dict]]:
    """(teacher, student) -> method collection -> entry, in file order."""
    pairs: Dict[tuple, Dict[str, dict]] = OrderedDict()
    for entry in models:
        if entry['In Collection'] not in METHODS:
            continue
        meta = entry['Metadata']
        pair = pairs.setdefault((meta['Teacher'], meta['Student']), {})
        pair[entry['In Collection']] = entry
    return pairs


def _cell(value: Optional[float]) -> str:
    return NOT_TRAINED if value is None else f'{value:.2f}'


def _student_top1(student: str, entries: Dict[str, dict],
                  models: List[dict]) -> Optional[float]:
    """The published top-1 of the student, else this repository's result of
    the student's plain training config."""
    published = entries['KD']['Metadata']['Published Top 1 Accuracy']
    if 'Student' in published:
        return published['Student']
    for entry in models:
        if entry['Metadata'].get('Network') == student:
            return trained_top1(entry)
    return None


def results_table(metafile: str) -> str:
    """The README's results table of a metafile's distillation configs.

    One row per teacher -> student pair: the published top-1 of teacher,
    student, KD and DKD, this repository's LoCa and DKD+LoCa results (or
    "not trained yet"), and links to the four configs.

    Raises:
        ValueError: if a pair lacks one of the four methods.
    """
    models = load_models(metafile)
    readme_dir = osp.dirname(osp.abspath(metafile))
    repo = osp.dirname(osp.dirname(osp.dirname(readme_dir)))
    lines = [
        '| Teacher -> student | Teacher | Student | KD | DKD | LoCa | '
        'DKD+LoCa | Configs |',
        '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
    for (teacher, student), entries in distillation_pairs(models).items():
        missing = [m for m in METHODS if m not in entries]
        if missing:
            raise ValueError(f'{metafile}: {teacher} -> {student} has no '
                             f'{", ".join(missing)} entry')
        published = entries['KD']['Metadata']['Published Top 1 Accuracy']
        cells = [f'{teacher} -> {student}', _cell(published['Teacher']),
                 _cell(_student_top1(student, entries, models))]
        cells += [
            _cell(entries[m]['Metadata']['Published Top 1 Accuracy'].get(
                'Distilled')) for m in PUBLISHED_METHODS
        ]
        cells += [_cell(trained_top1(entries[m])) for m in TRAINED_METHODS]
        links = []
        for method in METHODS:
            config = osp.relpath(
                osp.join(repo, entries[method]['Config']), readme_dir)
            links.append(f'[{method}](./{config})')
        cells.append(' '.join(links))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def replace_table(text: str, table: str, readme: str) -> str:
    """``text`` with the part between the table markers replaced by
    ``table``.

    Raises:
        ValueError: if ``readme`` does not have each marker exactly once, in
            order.
    """
    if (text.count(TABLE_BEGIN) != 1 or text.count(TABLE_END) != 1
            or text.index(TABLE_BEGIN) > text.index(TABLE_END)):
        raise ValueError(f'{readme} needs one line "{TABLE_BEGIN}" and, '
                         f'after it, one line "{TABLE_END}"')
    head, rest = text.split(TABLE_BEGIN)
    _, tail = rest.split(TABLE_END)
    return f'{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{tail}'


def render_readme(metafile: str, readme: str, check: bool = False) -> bool:
    """Write the results table of ``metafile`` into ``readme``.

    Args:
        metafile (str): a configs folder's metafile.yml.
        readme (str): its README.md, with the table markers.
        check (bool): only compare, do not write.

    Returns:
        bool: True if the README's table was out of date (and, unless
        ``check``, has been rewritten).
    """
    with open(readme, encoding='utf-8') as f:
        text = f.read()
    updated = replace_table(text, results_table(metafile), readme)
    if updated == text:
        return False
    if not check:
        with open(readme, 'w', encoding='utf-8') as f:
            f.write(updated)
    return True
