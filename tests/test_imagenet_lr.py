"""The ImageNet distillation configs keep the recipe's lr per image (0.1
per 256) whatever the number of GPUs: a run on one GPU is not 8x too fast."""
import pytest
import torch
from mmengine.runner import Runner

from _imagenet_utils import write_imagenet_layout
from _support import REPO, dataloader_options, quiet_runner_reports
from loca_mm.utils import resolve_model_config
from mmpretrain.registry import MODELS as CLS_MODELS
# The ImageNet config tests' parses, cached for the session.
from test_imagenet_configs import CONFIGS, load_config

# The cheapest pair: ResNet-34 -> ResNet-18.
CONFIG = (REPO / 'configs/distill/imagenet' /
          'kd_logits_resnet34_resnet18_8xb32_in1k.py')


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: p.stem)
def test_lr_scales_with_the_actual_batch_by_default(config):
    cfg = load_config(config)
    assert cfg.auto_scale_lr == dict(base_batch_size=256, enable=True)
    assert cfg.optim_wrapper.optimizer.lr == 0.1
    assert cfg.train_dataloader.batch_size * 8 == 256


def test_one_process_trains_at_the_recipes_lr_per_image(tmp_path,
                                                        monkeypatch):
    quiet_runner_reports(monkeypatch)
    root = tmp_path / 'imagenet'
    write_imagenet_layout(str(root), 2, train_per_class=2, val_per_class=1,
                          size=(40, 48))
    cfg = load_config(CONFIG)
    teacher = tmp_path / 'resnet34.pth'
    teacher_model = CLS_MODELS.build(
        resolve_model_config(cfg.model.teacher))
    torch.save({'state_dict': teacher_model.state_dict()}, teacher)
    cfg.train_dataloader.dataset.pipeline[1].scale = 32
    cfg.merge_from_dict({
        **dataloader_options(root, batch_size=2, in_process=True),
        'train_dataloader.dataset.indices': 2,
        'train_cfg.max_epochs': 1,
        'default_hooks.checkpoint': None,
        'model.teacher_ckpt': str(teacher),
        'work_dir': str(tmp_path / 'work'),
    })
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1 and runner.world_size == 1
    # 1 process x 2 images: 0.1 x 2 / 256, the lr an 8 x 32 run has per image.
    lr, = set(runner.optim_wrapper.get_lr()['lr'])
    assert lr == pytest.approx(0.1 * 2 / 256)
    assert runner.param_schedulers[0].base_values == [pytest.approx(lr)]
