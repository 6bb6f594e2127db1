"""The demo (projects/fashion_mnist/demo.py, run by tools/demo.sh) end to
end at toy size: a good and a weak teacher side by side, every run from the
project's configs, the mis-instruction analysis, the table and the plot, on
a small Fashion-MNIST written by the test."""
import json

import pytest

import _fashion_mnist_utils as fm
from _support import REPO

DEMO = 'demo'
METHODS = {
    'student': 'student alone',
    'kd': 'KD',
    'loca': 'LoCa (wrong, alpha 0.9)',
    'dkd': 'DKD (beta 2)',
    'dkdloca': 'DKD+LoCa (wrong, alpha 0.9)',
}
TEACHERS = ('strong', 'weak')


@pytest.mark.slow
def test_demo_shows_both_teachers_side_by_side(tmp_path):
    out = tmp_path / 'out'
    # One training at a time, in this process: test_study covers two worker
    # processes.
    stdout, results = fm.run_study_tool(DEMO, tmp_path, jobs=1)

    runs = ['student s0'] + [
        f'{kind} {t}' for t in TEACHERS for kind in ('teacher',
                                                     'misinstruction')
    ] + [f'{m} {t} s0' for t in TEACHERS for m in METHODS if m != 'student']
    assert set(results['runs']) == set(runs)
    for run in runs:
        assert f'==> [{run}]' in stdout and f'<== [{run}]' in stdout
    assert list(results['teachers']) == list(TEACHERS)
    for name, teacher in results['teachers'].items():
        assert set(teacher['methods']) == set(METHODS)
        for method in teacher['methods'].values():
            assert method['top1']['n'] == 1
    # Every training ran the project's config of its method.
    for name, run in results['runs'].items():
        if run['kind'] == 'misinstruction':
            continue
        with open(f"{run['work_dir']}/result.json") as f:
            config = json.load(f)['spec']['config']
        method = name.split()[0]
        assert config.startswith('configs/')
        assert (REPO / config).is_file()
        if run['kind'] == 'distill':
            assert config.split('/')[-1].startswith(f'{method}_logits_')

    table = (out / 'results.md').read_text().splitlines()
    header = next(i for i, line in enumerate(table)
                  if line.startswith('| | ') and 'mis-instructs' in line)
    good, weak = (results['teachers'][t] for t in TEACHERS)
    for label in METHODS.values():
        row = next(line for line in table[header:]
                   if line.startswith(f'| {label} |'))
        key = next(k for k, v in METHODS.items() if v == label)
        assert row == (f'| {label} | {good["methods"][key]["top1"]["mean"]:.2f}'
                       f' | {weak["methods"][key]["top1"]["mean"]:.2f} |')
    # One sentence under the table says what the two columns are.
    after = table[header + 2 + len(METHODS):]
    assert after[0] == '' and after[1].startswith('Each column is one teacher')
    # One seed: no paired-difference table, no error bars.
    assert not any(line.startswith('Paired differences') for line in table)
    # Two teachers at one seed: no line through them, no interval.
    assert results['fits'] == {}
    assert not any('R²' in line or 'interval' in line for line in table)
    assert 'No line is fitted to the gains: 2 teachers; a line needs 3 or ' \
        'more (one through two points fits them exactly).' in table
    assert (out / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
