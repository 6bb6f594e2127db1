"""The DIST and DIST+LoCa configs (Fashion-MNIST and CIFAR-100 resnet32x4 ->
resnet8x4): mmrazor's DIST settings, the pair's networks, and two training
iterations with a real Runner."""
import math
from pathlib import Path

import pytest
from mmengine.config import Config

from loca_mm.utils import resolve_model_config

import _fashion_mnist_utils as fm
from _cifar100_utils import (DISTILL_DIR, MODEL_DIR, build_runner,
                             cifar_files_unchecked,  # noqa: F401
                             random_split, save_fresh_model,
                             short_run_options, write_cifar100)
from _support import logged_scalars

CIFAR = 'logits_resnet32x4_resnet8x4_1xb64_cifar100.py'
CONFIGS = {
    ('fashion_mnist', 'dist'): fm.DISTILL / f'dist_{fm.PAIR}',
    ('fashion_mnist', 'distloca'): fm.DISTILL / f'distloca_{fm.PAIR}',
    ('cifar100', 'dist'): DISTILL_DIR / f'dist_{CIFAR}',
    ('cifar100', 'distloca'): DISTILL_DIR / f'distloca_{CIFAR}',
}
# mmrazor's configs/distill/mmcls/dist/dist_logits_resnet34_resnet18_8xb32_
# in1k.py: DISTLoss(beta=1, gamma=1, tau=1, loss_weight=2) beside CE 1.
DIST = dict(
    type='DISTLoss',
    inter_loss_weight=1.0,
    intra_loss_weight=1.0,
    tau=1.0,
    loss_weight=2.0)
NETWORKS = {
    'fashion_mnist': ('convnet16x32', 'convnet32x64'),
    'cifar100': ('resnet8x4', 'resnet32x4'),
}


def num_params(model_cfg) -> int:
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(model_cfg, _scope_='mmpretrain'))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('key', list(CONFIGS), ids='-'.join)
def test_config_is_mmrazor_dist_with_or_without_loca(key):
    data, method = key
    cfg = Config.fromfile(str(CONFIGS[key]))
    losses = cfg.model.distiller.distill_losses
    assert losses.loss_ce.loss_weight == 1.0
    distill = losses.loss_distill.to_dict()
    assert distill.pop('type') == 'LoCaCalibratedLoss'
    assert distill.pop('loss') == DIST
    assert distill == (dict(calibrate='none') if method == 'dist' else dict(
        calibrate='wrong', alpha=0.9))
    model_dir = (MODEL_DIR if data == 'cifar100' else fm.REPO /
                 'configs/_base_/models/fashion_mnist')
    for network, name in zip((cfg.model.architecture, cfg.model.teacher),
                             NETWORKS[data]):
        reference = Config.fromfile(str(model_dir / f'{name}.py')).model
        network = resolve_model_config(network)
        assert num_params(network) == num_params(reference)
        assert network.backbone.to_dict() == reference.backbone.to_dict()


@pytest.mark.parametrize('method', ['dist', 'distloca'])
def test_fashion_mnist_config_trains_two_iterations(method, tmp_path):
    runner = fm.train_two_iterations(CONFIGS[('fashion_mnist', method)],
                                     tmp_path)
    assert runner.iter == 2
    hub = runner.message_hub
    assert math.isfinite(
        hub.log_scalars['train/distill.loss_distill'].current())
    if method == 'distloca':
        # Logged every iteration: one window per batch.
        lines, = logged_scalars(tmp_path / 'work')
        ratios = [line['loca_ratio'] for line in lines if 'loca_ratio' in line]
        assert ratios == [29 / 32, 28 / 32]
    else:
        assert 'train/loca_ratio' not in hub.log_scalars


@pytest.fixture(scope='module')
def tiny_cifar100(tmp_path_factory, cifar_files_unchecked):  # noqa: F811
    root = tmp_path_factory.mktemp('cifar100')
    write_cifar100(str(root), random_split(4, seed=0), random_split(2, seed=1))
    return str(root)


@pytest.mark.parametrize('method', ['dist', 'distloca'])
def test_cifar100_config_trains_two_iterations(method, tiny_cifar100,
                                               tmp_path):
    cfg = Config.fromfile(str(CONFIGS[('cifar100', method)]))
    teacher = str(tmp_path / Path(cfg.model.teacher_ckpt).name)
    save_fresh_model(dict(cfg.model.teacher, _scope_='mmpretrain'), teacher)
    runner = build_runner(
        cfg,
        short_run_options(
            tiny_cifar100, str(tmp_path), batch_size=2, teacher_ckpt=teacher))
    runner.train()
    assert runner.iter == 2
    hub = runner.message_hub
    assert math.isfinite(
        hub.log_scalars['train/distill.loss_distill'].current())
    assert 0 <= hub.log_scalars['val/accuracy/top1'].current() <= 100
    # A random teacher is almost always wrong: LoCa calibrates nearly all.
    if method == 'distloca':
        assert hub.log_scalars['train/loca_ratio'].current() >= 0.5
    else:
        assert 'train/loca_ratio' not in hub.log_scalars
