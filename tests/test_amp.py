"""Mixed precision: ``--amp`` without CUDA trains a distillation config in
CPU bfloat16 autocast through mmengine, with the losses of float32 to
bfloat16's tolerance; the losses compute in float32 under autocast."""

import pytest
import torch
from mmengine.runner import Runner

from loca_mm.models.losses import DKDLoCaLoss, LoCaLoss
from loca_mm.utils.amp import amp_optim_wrapper
from _support import logged_scalars
from test_calibration_scalars import loca_config

TRAIN_LABELS = [3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1] * 2  # 3 batches of 8


@pytest.mark.parametrize('loss_type', [LoCaLoss, DKDLoCaLoss])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_losses_under_autocast_compute_in_float32(loss_type, dtype):
    g = torch.Generator().manual_seed(0)
    w_s = torch.randn(16, 10, generator=g)
    x = torch.randn(32, 16, generator=g)
    zt = (3 * torch.randn(32, 10, generator=g)).to(dtype)
    y = torch.randint(0, 10, (32, ), generator=g)
    loss = loss_type(tau=2.0)
    loss.attach_runner(train_loop_by_epoch=True)
    # A half-precision student: the logits come out of a linear layer.
    w_half = w_s.to(dtype).requires_grad_()
    with torch.autocast('cpu', dtype=dtype):
        logits = x.to(dtype) @ w_half
        out = loss(logits, zt, y)
    assert logits.dtype == dtype and out.dtype == torch.float32
    out.backward()
    assert w_half.grad.dtype == dtype
    # Inside, float32: the same value as the loss of the upcast logits.
    reference = loss(logits.detach().float(), zt.float(), y)
    torch.testing.assert_close(out, reference, rtol=1e-6, atol=1e-7)
    # The gradient reaching the student is float32's, rounded to dtype.
    w32 = w_half.detach().float().requires_grad_()
    loss((x.to(dtype).float() @ w32).to(dtype).float(), zt.float(),
         y).backward()
    torch.testing.assert_close(
        w_half.grad.float(), w32.grad, rtol=2e-2, atol=2e-3)


def test_amp_without_cuda_is_cpu_bfloat16_autocast(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    wrapper = amp_optim_wrapper(
        dict(optimizer=dict(type='SGD', lr=0.1), clip_grad=None))
    assert wrapper.type == 'AutocastOptimWrapper'
    assert (wrapper.device_type, wrapper.dtype) == ('cpu', 'bfloat16')
    assert wrapper.optimizer == dict(type='SGD', lr=0.1)
    with pytest.raises(ValueError, match="dtype='float16' needs a GPU"):
        amp_optim_wrapper(dict(optimizer={}, dtype='float16'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    wrapper = amp_optim_wrapper(dict(optimizer=dict(type='SGD', lr=0.1)))
    assert (wrapper.type, wrapper.loss_scale) == ('AmpOptimWrapper',
                                                  'dynamic')


def train_losses(tmp_path, name, amp):
    cfg = loca_config(tmp_path, TRAIN_LABELS, 1,
                      **{'default_hooks.checkpoint.interval': 100})
    if amp:
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper)
    cfg.work_dir = str(tmp_path / name)
    cfg.experiment_name = name
    runner = Runner.from_cfg(cfg)
    runner.train()
    lines, = logged_scalars(tmp_path / name)
    return runner, [{k: v for k, v in line.items() if 'loss' in k}
                    for line in lines if 'loss' in line]


def test_distillation_config_trains_in_cpu_bfloat16_autocast(
        tmp_path, monkeypatch):
    torch.manual_seed(0)
    _, full = train_losses(tmp_path, 'float32', amp=False)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    torch.manual_seed(0)
    runner, mixed = train_losses(tmp_path, 'bfloat16', amp=True)
    assert type(runner.optim_wrapper).__name__ == 'AutocastOptimWrapper'
    assert len(mixed) == len(full) == 3
    for step_full, step_mixed in zip(full, mixed):
        assert step_mixed.keys() == step_full.keys()
        for key, value in step_full.items():
            assert step_mixed[key] == pytest.approx(value, rel=1e-2), key
    # Autocast was on: the student's logits in training were bfloat16.
    seen = []
    head = runner.model.architecture.head.fc
    handle = head.register_forward_hook(
        lambda module, args, output: seen.append(output.dtype))
    batch = next(iter(runner.train_dataloader))
    runner.model.train_step(batch, runner.optim_wrapper)
    handle.remove()
    assert seen == [torch.bfloat16]
