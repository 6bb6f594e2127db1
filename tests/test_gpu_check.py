"""The prepared GPU check keeps working where no GPU is: its dry run runs
every part on the CPU at tiny sizes and writes its report, keeps to its time
limit, and (opt-in, LOCA_MM_TEST_GPU_CHECK_VENV=1) starts from the prepared
wheels in a fresh virtual environment holding only what a GPU image holds."""
import json
import os
import subprocess
import sys
import venv

import pytest
import torch

from _support import REPO

sys.path.insert(0, str(REPO / 'tools' / 'benchmark'))
import gpu_check  # noqa: E402

WHEELS = REPO / '.gpu_wheels'
# What a GPU image brings beside CUDA PyTorch that the OpenMMLab stack
# imports (compiled packages, which .gpu_wheels/ leaves to the image).
IMAGE_PACKAGES = ['numpy', 'opencv-python-headless', 'matplotlib', 'pyyaml']


def rows(report, part):
    found = report['parts'][part]
    assert not any('error' in r or 'skipped' in r for r in found), found
    return found


def test_dry_run_of_the_loss_parts_writes_json_and_markdown(tmp_path):
    out = tmp_path / 'check'
    args = gpu_check.parse_args([
        '--dry-run', '--out',
        str(out), '--parts', 'equality', 'loss_syncs', 'loss_timings',
        'fused_linear'
    ])
    report = gpu_check.run(args)
    assert report['errors'] == {} and gpu_check.failures(report) == []
    equality = rows(report, 'equality')
    # Every registered loss x three label kinds x two dtypes.
    assert {r['loss'] for r in equality} == {
        'LoCaLoss', 'DKDLoCaLoss', 'LoCaCalibratedLoss'
    }
    assert len(equality) == 18 and all(r['ok'] for r in equality)
    timings = rows(report, 'loss_timings')
    assert len(timings) == 10  # five losses, eager and compiled
    assert all(r['ms'] > 0 and r['time_vs_kd'] > 0 for r in timings)
    fused = rows(report, 'fused_linear')
    assert [r['method'] for r in fused] == [
        'materialised logits', 'fused linear'
    ]
    saved = json.loads((out / 'gpu_check.json').read_text())
    assert saved['parts']['loss_timings'] == json.loads(
        json.dumps(timings))
    summary = (out / 'gpu_check.md').read_text()
    assert '## equality' in summary and '| LoCaCalibratedLoss | soft |' \
        in summary

    with pytest.raises(FileExistsError, match='--force'):
        gpu_check.run(args)
    assert json.loads((out / 'gpu_check.json').read_text()) == saved


def test_baselines_are_kd_and_dkd():
    """The mdistiller-style baselines of the timing table equal loca_mm's
    KD and DKD without calibration."""
    from loca_mm import functional as LF
    preds_S, preds_T, labels = gpu_check.loss_inputs(
        'hard', torch.device('cpu'), torch.float64)
    assert gpu_check.kd_formula(preds_S, preds_T, labels).item() == \
        pytest.approx(LF.loca_kd_loss(preds_S, preds_T, labels,
                                      calibrate='none').loss.item(),
                      rel=1e-12)
    assert gpu_check.dkd_formula(preds_S, preds_T, labels).item() == \
        pytest.approx(LF.dkd_loss(preds_S, preds_T, labels,
                                  calibrate='none').loss.item(),
                      rel=1e-12)


def test_time_limit_skips_what_does_not_fit_and_still_reports(tmp_path):
    out = tmp_path / 'check'
    report = gpu_check.run(
        gpu_check.parse_args(
            ['--dry-run', '--out',
             str(out), '--time-limit', '0']))
    assert list(report['parts']) == list(gpu_check.PARTS)
    assert report['errors'] == {}
    measured = [
        row for part in report['parts'].values()
        for row in (part if isinstance(part, list) else [part])
    ]
    assert measured and all('s left, needs' in r['skipped'] for r in measured)
    assert 'skipped' in (out / 'gpu_check.md').read_text()


@pytest.mark.slow
def test_dry_run_trains_each_method_and_compares_it_with_kd(
        tmp_path, monkeypatch):
    monkeypatch.setitem(
        gpu_check.DRY, 'training',
        (('resnet32x4->resnet8x4', 32, 2, ('bfloat16', ), ('KD', 'LoCa')), ))
    report = gpu_check.run(
        gpu_check.parse_args(
            ['--dry-run', '--out',
             str(tmp_path), '--parts', 'training']))
    kd, loca = rows(report, 'training')
    for row in (kd, loca):
        assert row['optim_wrapper'] == 'AutocastOptimWrapper'  # CPU bf16
        assert row['finite'] and len(row['loop_losses']) == 1
        assert row['images_per_s'] > 0
    assert loca['throughput_vs_kd'] == pytest.approx(
        loca['images_per_s'] / kd['images_per_s'])


def prepare_wheels() -> float:
    """Run prepare_gpu_check.sh (PyPI); the size of .gpu_wheels/ in MiB."""
    subprocess.run(['bash', 'tools/benchmark/prepare_gpu_check.sh'],
                   cwd=REPO,
                   env=dict(os.environ, PYTHON=sys.executable),
                   check=True)
    return sum(f.stat().st_size for f in WHEELS.iterdir()) / 2**20


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get('LOCA_MM_TEST_GPU_CHECK_VENV') != '1',
    reason='minutes: set LOCA_MM_TEST_GPU_CHECK_VENV=1 (run by .ci/run)')
def test_gpu_check_sh_runs_from_the_prepared_wheels_alone(tmp_path):
    assert prepare_wheels() <= 40
    env_dir = tmp_path / 'image'
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / 'bin' / 'python')
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"
    import torchvision
    vision_pin = f"torchvision=={torchvision.__version__.split('+')[0]}"
    subprocess.run(
        [python, '-m', 'pip', 'install', '-q', torch_pin, vision_pin] +
        IMAGE_PACKAGES,
        check=True)
    out = tmp_path / 'check'
    done = subprocess.run(
        ['bash', 'tools/benchmark/gpu_check.sh', '--dry-run', '--out',
         str(out)],
        cwd=REPO,
        env=dict(os.environ, PYTHON=python, PYTHONPATH=''),
        capture_output=True,
        text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'installing' in done.stdout and 'torch 2.' in done.stdout
    report = json.loads((out / 'gpu_check.json').read_text())
    assert list(report['parts']) == list(gpu_check.PARTS)
    assert report['errors'] == {} and gpu_check.failures(report) == []
    assert report['parts']['nccl']['backend'] == 'gloo'


def test_gpu_training_configs_are_what_tools_train_amp_builds(
        monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    fp16, bf16 = (gpu_check.training_config(
        gpu_check.ARCHS['ResNet50->MobileNetV1'].format('loca'),
        str(tmp_path), 'data', 'teacher.pth', 224, 256, precision, True)
                  for precision in ('float16', 'bfloat16'))
    assert fp16.optim_wrapper.type == bf16.optim_wrapper.type == \
        'AmpOptimWrapper'
    assert fp16.optim_wrapper.get('dtype') is None  # float16 on CUDA
    assert bf16.optim_wrapper.dtype == 'bfloat16'
    assert bf16.model.teacher_ckpt == 'teacher.pth'
    assert bf16.train_dataloader.batch_size == 256
    assert bf16.train_dataloader.dataset.pipeline[0] == dict(
        type='Resize', scale=(224, 224))
    assert dict(type='LoCaLossHook') in bf16.custom_hooks
