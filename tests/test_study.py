"""The Fashion-MNIST study (projects/fashion_mnist): its metrics against hand
computations, its fits only where they can fail, and the study's script
(run_study.py) end to end at toy size."""
import math

import numpy as np
import pytest
import torch

import _fashion_mnist_utils as fm
import mmengine.config.config as mmengine_config
from projects.fashion_mnist import study
from projects.fashion_mnist.metrics import (bootstrap_crossover,
                                            classification_metrics,
                                            linear_fit)
from projects.fashion_mnist.report import GAIN_LABELS, markdown, plot_curve
from projects.fashion_mnist.worker import remember_config_formatting

SCRIPT = 'run_study'


def test_classification_metrics_match_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 10, generator=g) * 3
    labels = torch.randint(0, 10, (500, ), generator=g)
    probs = torch.softmax(logits.double(), -1).numpy()
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = predicted == labels.numpy()
    ece = 0.0
    for b in range(15):
        low, high = b / 15, (b + 1) / 15
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() -
                                       confidence[in_bin].mean())
    nll = -np.log(probs[np.arange(500), labels.numpy()]).mean()
    metrics = classification_metrics(logits, labels)
    assert metrics['top1'] == pytest.approx(100 * correct.mean())
    assert metrics['ece'] == pytest.approx(100 * ece, abs=1e-9)
    assert metrics['nll'] == pytest.approx(nll, rel=1e-9)
    # A confident, always-right classifier is calibrated only in the limit.
    sure = classification_metrics(torch.eye(4) * 50, torch.arange(4))
    assert sure['top1'] == 100 and sure['ece'] < 1e-12


def test_fit_and_bootstrap_find_a_known_crossover():
    rates = [5.0, 15.0, 25.0, 35.0]
    # gain = 0.2 * (rate - 20) exactly on every seed: no uncertainty.
    exact = [[0.2 * (r - 20)] * 3 for r in rates]
    fit = linear_fit(rates, [v[0] for v in exact])
    assert fit['slope'] == pytest.approx(0.2)
    assert fit['crossover'] == pytest.approx(20.0)
    assert fit['r2'] == pytest.approx(1.0)
    boot = bootstrap_crossover(rates, exact, repeats=200)
    assert boot['low'] == pytest.approx(20) == boot['high']
    # Seed noise of +-0.5 points around the same line.
    noisy = [[0.2 * (r - 20) + d for d in (-0.5, 0.0, 0.5)] for r in rates]
    boot = bootstrap_crossover(rates, noisy, repeats=500)
    assert boot['low'] < 20 < boot['high'] and boot['high'] - boot['low'] < 10
    assert boot['opposite_slope'] == 0
    # Fewer than three distinct x values: a line that cannot fail, refused.
    for x in ([1.0, 2.0], [1.0, 1.0, 2.0]):
        with pytest.raises(ValueError, match='at least 3 distinct x'):
            linear_fit(x, [0.0, 1.0, 0.5][:len(x)])
    # One seed of a point: resampling returns it; no interval.
    with pytest.raises(ValueError, match='at least 2 seeds per point'):
        bootstrap_crossover(rates, [[1.0, 2.0]] * 3 + [[4.0]])


def teacher_summary(rate: float, gains) -> dict:
    """A teacher's entry of a study summary: its mis-instruction rate and
    the per-seed gains of LoCa over KD."""
    return dict(
        label=f'rate {rate}',
        top1=100 - rate,
        ece=1.0,
        nll=0.5,
        misinstruction=dict(misinstruction_rate=rate / 100),
        methods={},
        differences={'loca - kd': study.mean_std(gains)})


@pytest.mark.parametrize('teachers, seeds, fitted, interval', [
    (2, 2, False, False),
    (3, 1, True, False),
    (3, 2, True, True),
])
def test_gains_are_fitted_from_three_teachers_and_bounded_from_two_seeds(
        teachers, seeds, fitted, interval):
    # gain = 0.1 * (rate - 20) + seed noise: crossover near 20%.
    rates = [5.0, 25.0, 45.0][:teachers]
    summary = dict(
        seeds=list(range(seeds)),
        teachers={
            f't{r}': teacher_summary(
                r, [0.1 * (r - 20) + d for d in (-0.2, 0.3)[:seeds]])
            for r in rates
        })
    fits = study.fit_gains(summary)
    assert bool(fits) == fitted
    if fitted:
        fit = fits['loca - kd']['misinstruction_rate']
        assert fit['slope'] == pytest.approx(0.1)
        assert fit['crossover'] == pytest.approx(
            20.0 - (0.05 if seeds > 1 else -0.2) / 0.1)
        assert ('bootstrap' in fit) == interval
    summary['fits'] = fits
    table = markdown(summary, 'toy')
    assert ('| LoCa − KD | mis-instruction rate (%) |' in table) == fitted
    if fitted and not interval:
        assert '| n/a (one seed) | n/a (one seed) |' in table
    if not fitted:
        assert 'R²' not in table
        assert 'No line is fitted to the gains: 2 teachers' in table


def test_every_gain_of_the_study_is_fitted_reported_and_plotted(tmp_path):
    # Gain i = 0.1 * (i + 1) * (rate - 20) + seed noise: each line has its
    # own slope and crosses zero at 20% mis-instruction, but for the last,
    # which crosses at 60%, beyond the teachers' 5% .. 45%.
    rates = [5.0, 25.0, 45.0]
    names = [f'{first} - {second}' for first, second in study.GAINS]
    slopes = {name: 0.1 * (i + 1) for i, name in enumerate(names)}
    crossovers = {name: 60.0 if name == names[-1] else 20.0 for name in names}
    summary = dict(seeds=[0, 1], teachers={})
    for rate in rates:
        entry = teacher_summary(rate, [0.0])
        entry['differences'] = {
            name: study.mean_std([
                slopes[name] * (rate - crossovers[name]) + d
                for d in (-0.2, 0.2)
            ])
            for name in names
        }
        summary['teachers'][f't{rate}'] = entry
    summary['fits'] = study.fit_gains(summary)
    assert set(summary['fits']) == set(names)
    table = markdown(summary, 'toy')
    for name in names:
        fit = summary['fits'][name]['misinstruction_rate']
        assert fit['slope'] == pytest.approx(slopes[name])
        assert fit['crossover'] == pytest.approx(crossovers[name])
        assert (f'| {GAIN_LABELS[name]} | mis-instruction rate (%) | '
                f'{slopes[name]:+.3f} |') in table
    assert '| 20.0 |' in table
    assert '| 60.0 (outside the data, 5.0 .. 45.0) |' in table
    # One row of panels per group of gains (4.4 inches at 110 dpi each).
    plot_curve(summary, str(tmp_path / 'gain_curve.png'))
    from matplotlib.image import imread
    height = imread(tmp_path / 'gain_curve.png').shape[0]
    assert height == pytest.approx(
        4.4 * 110 * len(study.GAIN_GROUPS), abs=2)


def test_workers_take_omp_num_threads_else_a_share_of_the_cpus(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert study.worker_threads(1) == study.worker_threads(8) == 3
    monkeypatch.delenv('OMP_NUM_THREADS')
    monkeypatch.setattr(study.os, 'cpu_count', lambda: 16)
    assert [study.worker_threads(j) for j in (1, 2, 5, 32)] == [16, 8, 3, 1]
    for wrong in ('0', 'two'):
        monkeypatch.setenv('OMP_NUM_THREADS', wrong)
        with pytest.raises(ValueError, match=f"OMP_NUM_THREADS.*'{wrong}'"):
            study.worker_threads(2)


def test_remembered_config_formatting_is_yapfs():
    from mmengine.config import Config
    from yapf.yapflib.yapf_api import FormatCode
    # The suite's processes are set up as the study's workers (conftest).
    remember_config_formatting()
    remember_config_formatting()  # a second call wraps nothing again
    cached = mmengine_config.FormatCode
    assert cached.__wrapped__ is FormatCode
    cfg = Config(dict(model=dict(type='X', depth=[1, 2, 3]), lr=0.1))
    hits = cached.cache_info().hits
    first, again = cfg.pretty_text, cfg.pretty_text
    assert cached.cache_info().hits > hits
    text = "a = dict(b=1, c=[1, 2, 3], d='a long enough string')\n"
    for limit in (20, 79):
        style = dict(based_on_style='pep8', column_limit=limit)
        assert cached(text, style_config=style) == FormatCode(
            text, style_config=style)
    assert cached(text, style_config=dict(column_limit=20)) != cached(
        text, style_config=dict(column_limit=79))
    assert first == again


def test_every_teacher_and_method_has_its_config():
    for entry in (*study.TEACHERS.values(), *study.METHODS.values()):
        assert (fm.REPO / entry.config).is_file(), entry.config
    with pytest.raises(ValueError, match='unknown teachers'):
        study.build_tasks(['no-such'], ['kd'], [0], 'work')


@pytest.mark.slow
def test_curve_script_at_toy_size(tmp_path):
    out, work = tmp_path / 'out', tmp_path / 'work'
    stdout, results = fm.run_study_tool(
        SCRIPT, tmp_path, '--seeds', '0', '1', '--teachers', 'large',
        'weak', '--methods', 'student', 'kd', 'loca', 'kdls', 'locals')
    teachers = results['teachers']
    assert list(teachers) == ['large', 'weak']
    for name, teacher in teachers.items():
        rate = teacher['misinstruction']['misinstruction_rate']
        # The analysis saw the students' training images (all 64 here).
        assert teacher['misinstruction']['num_samples'] == 64
        assert teacher['misinstruction']['teacher_top1'] == \
            pytest.approx(1 - rate)
        assert f'<== [misinstruction {name}]' in stdout
        for method in ('student', 'kd', 'loca', 'kdls', 'locals'):
            stats = teacher['methods'][method]
            assert stats['top1']['n'] == 2
            assert 0 <= stats['ece']['mean'] <= 100
            assert stats['nll']['mean'] > 0
        # The paired differences are the per-seed differences of the runs.
        runs = results['runs']
        for first, second in (('loca', 'kd'), ('kdls', 'kd'),
                              ('locals', 'kdls'), ('locals', 'kd')):
            per_seed = [
                runs[f'{first} {name} s{s}']['top1'] -
                runs[f'{second} {name} s{s}']['top1'] for s in (0, 1)
            ]
            assert teacher['differences'][f'{first} - {second}'][
                'values'] == pytest.approx(per_seed)
        assert 0 <= runs[f'loca {name} s0']['loca_ratio_mean'] <= 1
        assert teacher['teacher_minus_student'] == pytest.approx(
            teacher['top1'] - teacher['methods']['student']['top1']['mean'])
    # The larger teacher is the larger network, in training and distillation.
    with open(work / 'teacher_large' / 'teacher.pth', 'rb') as f:
        state = torch.load(f)['state_dict']
    assert state['head.fc.weight'].shape == (10, 6272)
    # Paired seeds: every method of a seed starts from the same student.
    seed0, seed1 = (torch.load(work / 'init' / f'student_seed{s}.pth')
                    ['state_dict'] for s in (0, 1))
    weight = next(k for k in seed0 if k.endswith('weight'))
    assert not torch.equal(seed0[weight], seed1[weight])

    # Two teachers: no line through them (it would fit exactly), but the
    # gains are plotted.
    assert results['fits'] == {}
    table = (out / 'results.md').read_text()
    for gain in ('LoCa − KD', 'KD+LS − KD', 'LoCa+LS − KD+LS', 'LoCa+LS − KD'):
        assert f'| {gain} |' in table
    assert 'R²' not in table
    assert 'No line is fitted to the gains: 2 teachers' in table
    for name in ('results.png', 'gain_curve.png', 'accuracy_curve.png'):
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert all(math.isfinite(r['seconds']) for r in runs.values())
