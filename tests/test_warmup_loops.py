"""DKD's warm-up under real mmengine Runners: epochs in an epoch loop,
iterations in any loop, and warmup_epochs refused where mmengine keeps
epoch 0 (an iteration loop) instead of weighting the loss 1/warmup for
good."""
import pytest
from mmengine.runner import Runner

from loca_mm.models.losses import DKDLoCaLoss
from test_distill_runner import (distill_cfg, image_folder,  # noqa: F401
                                 teacher_ckpt)


def run(tmp_path, image_folder, teacher_ckpt, loss, train_cfg,
        monkeypatch, hooks=True):
    """Train; return the warm-up factor of every training step."""
    cfg = distill_cfg(str(tmp_path), image_folder, teacher_ckpt,
                      dict(type='DKDLoCaLoss', **loss), 1,
                      name=f'warmup_{tmp_path.name}')
    cfg.train_cfg = train_cfg
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1000, by_epoch=False)
    if not hooks:
        cfg.custom_hooks = []
    factors = []
    original = DKDLoCaLoss.warmup_factor

    def recorded(self):
        factors.append(original(self))
        return factors[-1]

    monkeypatch.setattr(DKDLoCaLoss, 'warmup_factor', recorded)
    Runner.from_cfg(cfg).train()
    return factors


def test_warmup_epochs_in_an_epoch_loop(tmp_path, image_folder,
                                        teacher_ckpt, monkeypatch):
    factors = run(tmp_path, image_folder, teacher_ckpt,
                  dict(warmup_epochs=2),
                  dict(by_epoch=True, max_epochs=2), monkeypatch)
    assert factors == [0.5] * 4 + [1.0] * 4  # 4 iterations per epoch


def test_warmup_iters_in_an_iteration_loop(tmp_path, image_folder,
                                           teacher_ckpt, monkeypatch):
    factors = run(tmp_path, image_folder, teacher_ckpt,
                  dict(warmup_iters=3),
                  dict(by_epoch=False, max_iters=5), monkeypatch)
    assert factors == [1 / 3, 2 / 3, 1.0, 1.0, 1.0]


def test_warmup_epochs_in_an_iteration_loop_stops_at_the_first_step(
        tmp_path, image_folder, teacher_ckpt, monkeypatch):
    with pytest.raises(RuntimeError,
                       match=r'warmup_epochs=5\) trains under an '
                       r'iteration-based train loop.*warmup_iters'):
        run(tmp_path, image_folder, teacher_ckpt, dict(warmup_epochs=5),
            dict(by_epoch=False, max_iters=6), monkeypatch)


def test_warmup_epochs_without_the_hook_is_not_guessed(
        tmp_path, image_folder, teacher_ckpt, monkeypatch):
    with pytest.raises(RuntimeError, match='LoCaLossHook'):
        run(tmp_path, image_folder, teacher_ckpt, dict(warmup_epochs=2),
            dict(by_epoch=True, max_epochs=1), monkeypatch, hooks=False)
