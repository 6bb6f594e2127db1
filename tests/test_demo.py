"""The demo (tools/demo/run_demo.py) end to end at toy size: every run
through tools/train.py, the mis-instruction analysis, the table and the plot,
on a small Fashion-MNIST written by the test."""
import json
import os
import subprocess
import sys

import pytest

import _fashion_mnist_utils as fm

DEMO = fm.REPO / 'tools/demo/run_demo.py'
METHODS = {
    'student': 'student alone',
    'kd': 'KD',
    'loca': 'LoCa (wrong, alpha 0.9)',
    'dkd': 'DKD (beta 2)',
    'dkdloca': 'DKD+LoCa (wrong, alpha 0.9)',
}
RUNS = ['teacher strong', 'misinstruction strong', 'student s0'] + [
    f'{method} strong s0' for method in METHODS if method != 'student'
]


def test_demo_runs_every_method_and_reports(tmp_path):
    root = fm.write_fashion_mnist(tmp_path / 'data',
                                  [i % 10 for i in range(64)], list(range(10)))
    out, work = tmp_path / 'out', tmp_path / 'work'
    toy = [
        *fm.data_options(root), 'train_dataloader.batch_size=32',
        'train_cfg.max_epochs=1', 'param_scheduler.T_max=1',
        'train_cfg.val_interval=1', 'default_hooks.logger.interval=1'
    ]
    completed = subprocess.run([
        sys.executable,
        str(DEMO), '--out-dir',
        str(out), '--work-root',
        str(work), '--jobs', '2', '--cfg-options', *toy
    ],
                               cwd=fm.REPO,
                               env={
                                   **os.environ, 'PYTHONWARNINGS': 'ignore'
                               },
                               capture_output=True,
                               text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + \
        completed.stderr[-3000:]
    stdout = completed.stdout

    # Progress: a header per run, then its mmengine progress lines.
    for run in RUNS:
        assert f'==> [{run}]' in stdout
        assert f'<== [{run}]' in stdout
    assert '[kd strong s0]' in stdout and 'Epoch(train) [1][2/2]' in stdout

    with open(out / 'results.json') as f:
        results = json.load(f)
    teacher = results['teachers']['strong']
    assert 0.0 <= teacher['top1'] <= 100.0
    rate = teacher['misinstruction']['misinstruction_rate']
    assert 0.0 <= rate <= 1.0
    # The analysis saw the students' training images (all 64 here).
    assert teacher['misinstruction']['num_samples'] == 64
    assert teacher['misinstruction']['teacher_top1'] == pytest.approx(1 - rate)
    assert set(teacher['methods']) == set(METHODS)
    for method in teacher['methods'].values():
        assert method['n'] == 1 and 0.0 <= method['mean'] <= 100.0

    # Every training went through tools/train.py with the project's configs.
    for name, run in results['runs'].items():
        with open(os.path.join(run['work_dir'], 'result.json')) as f:
            command = json.load(f)['command']
        tool = 'misinstruction.py' if name.startswith('mis') else 'train.py'
        assert command[1].endswith(tool)
        assert '/configs/' in command[2]
    distilled = results['runs']['loca strong s0']
    # LoCa logged how often it calibrated (the teacher is often wrong here).
    assert 0.0 <= distilled['loca_ratio_mean'] <= 1.0

    table = (out / 'results.md').read_text()
    assert '| teacher top-1 |' in table
    assert f'| teacher mis-instruction rate | {100 * rate:.2f}% |' in table
    for label in METHODS.values():
        row = next(line for line in table.splitlines()
                   if line.startswith(f'| {label} |'))
        value = teacher['methods'][next(k for k, v in METHODS.items()
                                        if v == label)]['mean']
        assert row == f'| {label} | {value:.2f} |'
    assert (out / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
