"""Tables and figures of a study summary (:mod:`.study`)."""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Dict, List, Optional

from .metrics import MIN_BOOTSTRAP_SEEDS, MIN_FIT_POINTS
from .study import GAIN_GROUPS

GAIN_LABELS = {
    'loca - kd': 'LoCa − KD',
    'loca-margin-0.7 - kd': 'LoCa (margin, 0.7) − KD',
    'dkdloca - dkd': 'DKD+LoCa − DKD',
    'distloca - dist': 'DIST+LoCa − DIST',
    'kd - student': 'KD − student alone',
    'kdls - kd': 'KD+LS − KD',
    'locals - kdls': 'LoCa+LS − KD+LS',
    'locals - kd': 'LoCa+LS − KD',
    'dkdls - dkd': 'DKD+LS − DKD',
    'dkdlocals - dkdls': 'DKD+LoCa+LS − DKD+LS',
    'kd-standardized - kd': 'KD+LS (KD\'s settings) − KD',
    'loca-standardized - kd-standardized':
    'LoCa+LS − KD+LS (KD\'s settings)',
}
PREDICTOR_LABELS = {
    'misinstruction_rate': 'mis-instruction rate (%)',
    'teacher_minus_student': 'teacher top-1 − student-alone top-1 (points)',
}


def _stat(stat: dict, signed: bool = False, digits: int = 2) -> str:
    text = f"{stat['mean']:{'+' if signed else ''}.{digits}f}"
    if stat['n'] > 1:
        text += f" ± {stat['std']:.{digits}f}"
    return text


def _rate(teacher: dict) -> float:
    return 100 * teacher['misinstruction']['misinstruction_rate']


def _header(teachers: List[dict]) -> List[str]:
    names = [
        f"{t['label']} ({t['top1']:.1f}%, mis-instructs {_rate(t):.1f}%)"
        for t in teachers
    ]
    return ['| | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']


def _crossover(crossover: Optional[float], x: List[float]) -> str:
    """A fitted line's zero crossing, said to be an extrapolation where it
    lies outside the teachers' ``x``."""
    if crossover is None:
        return 'n/a'
    if min(x) <= crossover <= max(x):
        return f'{crossover:.1f}'
    return f'{crossover:.1f} (outside the data, {min(x):.1f} .. {max(x):.1f})'


def markdown(summary: dict, title: str, note: str = '') -> str:
    """The summary's tables, in markdown; ``note`` goes under the table of
    student top-1."""
    teachers = list(summary['teachers'].values())
    seeds = summary['seeds']
    several = len(seeds) > 1
    over = (f'mean ± std over seeds {seeds}' if several else f'seed {seeds[0]}')
    lines = [f'## {title}', '']
    lines += [
        'Teachers, on the 10,000 test images (ECE: expected calibration '
        'error, 15 bins; NLL: negative log-likelihood, nats), and their '
        'mis-instruction rate on the students\' augmented training images:',
        '', '| teacher | top-1 (%) | ECE (%) | NLL | mis-instruction rate |'
        ' top-1 − student alone |', '|---|---|---|---|---|---|'
    ]
    for t in teachers:
        gap = t.get('teacher_minus_student')
        lines.append(f"| {t['label']} | {t['top1']:.2f} | {t['ece']:.2f} | "
                     f"{t['nll']:.3f} | {_rate(t):.2f}% | " +
                     ('' if gap is None else f'{gap:+.2f}') + ' |')
    lines += ['', f'Student top-1 (%) on the 10,000 test images, {over}:', '']
    lines += _header(teachers)
    for method in teachers[0]['methods']:
        row = [t['methods'][method] for t in teachers]
        lines.append(f"| {row[0]['label']} | " +
                     ' | '.join(_stat(m['top1']) for m in row) + ' |')
    if note:
        lines += ['', note]
    differences = teachers[0]['differences']
    if differences and several:
        lines += [
            '', 'Paired differences of student top-1 (same seed: same '
            'initial student, batches and augmentation), percentage points, '
            'mean ± std (min .. max):', ''
        ]
        lines += _header(teachers)
        for name in differences:
            cells = []
            for t in teachers:
                stat = t['differences'][name]
                cells.append(f'{_stat(stat, signed=True)} '
                             f"({min(stat['values']):+.2f} .. "
                             f"{max(stat['values']):+.2f})")
            lines.append(f'| {GAIN_LABELS.get(name, name)} | ' +
                         ' | '.join(cells) + ' |')
    for metric, what, digits in (('ece', 'expected calibration error '
                                  '(%, 15 bins)', 2),
                                 ('nll', 'test NLL (nats)', 3)):
        lines += ['', f'Student {what}, {over}:', '']
        lines += _header(teachers)
        for method in teachers[0]['methods']:
            row = [t['methods'][method] for t in teachers]
            lines.append(f"| {row[0]['label']} | " + ' | '.join(
                _stat(m[metric], digits=digits) for m in row) + ' |')
    fits = summary.get('fits') or {}
    if fits:
        lines += [
            '', 'Lines fitted to the mean gain per teacher (gain = intercept '
            '+ slope × x); the crossover is where the line is 0, the gain\'s '
            'first method helping on the side the slope points to. Interval: '
            '90% of a bootstrap over seeds (2,000 repeats, each teacher\'s '
            'seeds drawn with replacement; none from fewer than '
            f'{MIN_BOOTSTRAP_SEEDS} seeds); "other slope" is the share of '
            'repeats whose slope has the other sign:', '',
            '| gain | x | slope | intercept | R² | crossover | 90% interval '
            '| other slope |', '|---|---|---|---|---|---|---|---|'
        ]
        measured = _predictors(summary)
        for name, per_predictor in fits.items():
            for predictor, fit in per_predictor.items():
                boot = fit.get('bootstrap')
                if boot is None:
                    interval = other = 'n/a (one seed)'
                else:
                    interval = ('n/a' if boot['low'] is None else
                                f"{boot['low']:.1f} .. {boot['high']:.1f}")
                    other = f"{100 * boot['opposite_slope']:.0f}%"
                cross = fit['crossover']
                lines.append(
                    f'| {GAIN_LABELS.get(name, name)} | '
                    f'{PREDICTOR_LABELS[predictor]} | {fit["slope"]:+.3f} | '
                    f'{fit["intercept"]:+.2f} | {fit["r2"]:.2f} | ' +
                    _crossover(cross, measured[predictor]) +
                    f' | {interval} | {other} |')
    elif 1 < len(teachers) < MIN_FIT_POINTS:
        lines += [
            '', f'No line is fitted to the gains: {len(teachers)} teachers; '
            f'a line needs {MIN_FIT_POINTS} or more (one through two points '
            'fits them exactly).'
        ]
    lines += [
        '', 'Mis-instruction rate: share of the students\' augmented '
        'training images whose label is not the teacher\'s strict top-1.', ''
    ]
    return '\n'.join(lines)


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_methods(summary: dict, path: str, title: str) -> None:
    """Bars of student top-1 per method, one panel per teacher side by side;
    seeds as dots and the standard deviation as error bars when there are
    several."""
    plt = _pyplot()
    teachers = list(summary['teachers'].values())
    fig, axes = plt.subplots(
        1,
        len(teachers),
        figsize=(5.5 * len(teachers), 4.2),
        squeeze=False,
        sharey=True)
    values = [
        v for t in teachers for m in t['methods'].values()
        for v in m['top1']['values']
    ]
    margin = max(1.0, 0.1 * (max(values) - min(values)))
    for ax, teacher in zip(axes[0], teachers):
        methods = list(teacher['methods'].values())
        several = methods[0]['top1']['n'] > 1
        ax.bar(
            range(len(methods)), [m['top1']['mean'] for m in methods],
            yerr=[m['top1']['std'] for m in methods] if several else None,
            color=['tab:gray'] + ['tab:blue'] * (len(methods) - 1),
            capsize=3)
        if several:
            for index, method in enumerate(methods):
                ax.plot([index] * method['top1']['n'],
                        method['top1']['values'], 'k.', ms=4)
        ax.set_ylim(min(values) - margin, max(values) + margin)
        ax.set_xticks(
            range(len(methods)), [m['label'] for m in methods],
            rotation=30,
            ha='right',
            fontsize=8)
        ax.set_ylabel('student top-1 (%)')
        ax.set_title(
            f"{teacher['label']}\nteacher top-1 {teacher['top1']:.1f}%, "
            f'mis-instructs {_rate(teacher):.1f}%',
            fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _predictors(summary: dict) -> dict:
    teachers = list(summary['teachers'].values())
    predictors = {'misinstruction_rate': [_rate(t) for t in teachers]}
    if all('teacher_minus_student' in t for t in teachers):
        predictors['teacher_minus_student'] = [
            t['teacher_minus_student'] for t in teachers
        ]
    return predictors


def _gains(summary: dict) -> Dict[str, List[str]]:
    """The study's gains (:data:`.study.GAIN_GROUPS`) the summary holds, by
    group; groups it holds none of are left out."""
    differences = next(iter(summary['teachers'].values()))['differences']
    groups = {}
    for title, gains in GAIN_GROUPS.items():
        names = [f'{first} - {second}' for first, second in gains]
        held = [name for name in names if name in differences]
        if held:
            groups[title] = held
    return groups


def plot_curve(summary: dict, path: str) -> None:
    """The paired gains against the mis-instruction rate and against the
    teacher's accuracy relative to the student alone, one row per group of
    gains: means with the seeds' range, and the fitted lines where there
    are (:func:`.study.fit_gains`)."""
    plt = _pyplot()
    teachers = list(summary['teachers'].values())
    predictors = _predictors(summary)
    fits = summary.get('fits') or {}
    groups = _gains(summary)
    fig, axes = plt.subplots(
        len(groups), len(predictors),
        figsize=(6.2 * len(predictors), 4.4 * len(groups)),
        squeeze=False, sharey='row')
    for row, (title, names) in zip(axes, groups.items()):
        offsets = {n: (i - (len(names) - 1) / 2) for i, n in enumerate(names)}
        for ax, (predictor, x) in zip(row, predictors.items()):
            span = max(x) - min(x)
            for name in names:
                stats = [t['differences'][name] for t in teachers]
                means = [s['mean'] for s in stats]
                low = [m - min(s['values']) for m, s in zip(means, stats)]
                high = [max(s['values']) - m for m, s in zip(means, stats)]
                shifted = [v + 0.006 * span * offsets[name] for v in x]
                line = ax.errorbar(
                    shifted, means, yerr=[low, high], fmt='o', capsize=3,
                    label=GAIN_LABELS.get(name, name))
                fit = fits.get(name, {}).get(predictor)
                if fit:
                    ends = [min(x), max(x)]
                    ax.plot(
                        ends,
                        [fit['intercept'] + fit['slope'] * e for e in ends],
                        '--', color=line[0].get_color(), lw=1)
            ax.axhline(0, color='k', lw=0.8)
            ax.set_xlabel(PREDICTOR_LABELS[predictor])
            ax.set_ylabel('paired gain in student top-1 (points)')
            ax.set_title(title, fontsize=10)
        row[0].legend(fontsize=8)
    fig.suptitle('Paired gains per teacher (dots: mean over seeds, bars: '
                 'seed range, dashed: linear fit)', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy(summary: dict, path: str) -> None:
    """Student top-1 per method against the mis-instruction rate and
    against the teacher's accuracy relative to the student alone."""
    plt = _pyplot()
    teachers = list(summary['teachers'].values())
    predictors = _predictors(summary)
    fig, axes = plt.subplots(
        1, len(predictors), figsize=(6.2 * len(predictors), 4.4),
        squeeze=False, sharey=True)
    for ax, (predictor, x) in zip(axes[0], predictors.items()):
        # More methods than the default cycle's 10 colours.
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
        order = sorted(range(len(x)), key=x.__getitem__)
        for method, stats in teachers[0]['methods'].items():
            means = [teachers[i]['methods'][method]['top1']['mean']
                     for i in order]
            style = 'k:' if method == 'student' else '.-'
            ax.plot([x[i] for i in order], means, style, label=stats['label'])
        ax.set_xlabel(PREDICTOR_LABELS[predictor])
        ax.set_ylabel('student top-1 (%), mean over seeds')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(summary: dict, out_dir: str, title: str,
                 note: str = '') -> str:
    """Write ``results.json``, ``results.md``, ``results.png`` (top-1 per
    method and teacher) and, with several teachers and a gain of
    :data:`.study.GAIN_GROUPS`, ``gain_curve.png`` and ``accuracy_curve.png``.
    Returns the markdown."""
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    table = markdown(summary, title, note)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(table)
    plot_methods(summary, osp.join(out_dir, 'results.png'), title)
    if len(summary['teachers']) > 1 and _gains(summary):
        plot_curve(summary, osp.join(out_dir, 'gain_curve.png'))
        plot_accuracy(summary, osp.join(out_dir, 'accuracy_curve.png'))
    return table

