"""The prepared GPU check keeps working: its dry run (what a machine without
CUDA runs) passes and writes its summaries, and refuses to overwrite them."""
import json
import sys

import pytest
import torch

from _support import REPO

sys.path.insert(0, str(REPO / 'tools' / 'benchmark'))
import gpu_check  # noqa: E402

SMALL_CONFIG = ('configs/distill/cifar100/'
                'loca_logits_resnet56_resnet20_1xb64_cifar100.py')


def test_dry_run_checks_the_cpu_parts_and_writes_json_and_markdown(
        tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    out = tmp_path / 'check'
    args = gpu_check.parse_args(
        ['--out', str(out), '--config', SMALL_CONFIG])
    report = gpu_check.run(args)
    assert report['errors'] == {}
    assert report['mode'].startswith('dry run') and 'no CUDA' in report['mode']
    # Both losses x three label kinds x two dtypes, all equal.
    assert len(report['equality']) == 12
    assert all(row['ok'] and row['statistics_equal']
               for row in report['equality'])
    run, = report['training']
    assert run['optim_wrapper'] == 'AutocastOptimWrapper'
    assert run['iterations'] == 2 and run['finite']
    assert len(run['losses']) == 2
    assert 'syncs' not in report and 'nccl' not in report
    saved = json.loads((out / 'gpu_check.json').read_text())
    assert saved['training'] == report['training']
    summary = (out / 'gpu_check.md').read_text()
    assert '## CUDA against CPU' in summary
    assert 'AutocastOptimWrapper, finite: True' in summary

    with pytest.raises(FileExistsError, match='--force'):
        gpu_check.run(args)
    assert json.loads((out / 'gpu_check.json').read_text()) == saved


def test_training_configs_are_what_tools_train_amp_builds(monkeypatch,
                                                          tmp_path):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    fp16 = gpu_check.cifar_config(str(tmp_path), 'data', 'teacher.pth',
                                  'float16', 64)
    bf16 = gpu_check.cifar_config(str(tmp_path), 'data', 'teacher.pth',
                                  'bfloat16', 64)
    assert fp16.optim_wrapper.type == bf16.optim_wrapper.type == \
        'AmpOptimWrapper'
    assert fp16.optim_wrapper.get('dtype') is None  # float16 on CUDA
    assert bf16.optim_wrapper.dtype == 'bfloat16'
    assert fp16.model.teacher_ckpt == 'teacher.pth'
    assert fp16.train_dataloader.dataset.data_root == 'data'
    assert dict(type='LoCaLossHook') in fp16.custom_hooks
