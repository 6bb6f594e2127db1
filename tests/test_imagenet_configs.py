"""The ImageNet configs and MobileNetV1: recipe, layout, and one training
iteration + validation of every config on a tiny data set in ImageNet's
layout (teachers from local checkpoints instead of the release URLs)."""
import copy
import functools
import math
from pathlib import Path

import mmpretrain
import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.runner import Runner

import loca_mm  # noqa: F401
from _imagenet_utils import write_imagenet_layout
from _support import (REPO, dataloader_options, load_tool,
                      quiet_runner_reports)
from loca_mm.models.backbones import MobileNetV1
from loca_mm.utils import resolve_model_config
from tools.analysis_tools.metafile import load_models, render_readme
from mmpretrain.registry import MODELS as CLS_MODELS

DISTILL_DIR = REPO / 'configs' / 'distill' / 'imagenet'
MODEL_DIR = REPO / 'configs' / '_base_' / 'models' / 'imagenet'
VANILLA = REPO / 'configs' / 'vanilla' / 'imagenet' / \
    'mobilenetv1_8xb32_in1k.py'
PAIRS = {'resnet34_resnet18': 'resnet34', 'resnet50_mobilenetv1': 'resnet50'}
METHODS = ('kd', 'loca', 'dkd', 'dkdloca')
CONFIGS = sorted(DISTILL_DIR.glob('*.py'))
# The one place of each config's facts (teacher, student, checkpoint, lr,
# DKD's beta, published top-1); the configs are checked against it.
METAFILE_ENTRIES = {
    entry['Name']: entry
    for entry in load_models(str(DISTILL_DIR / 'metafile.yml'))
}

# The DKD code base's MobileNetV1: (in, out, stride) of the 13 blocks.
MOBILENETV1_BLOCKS = [(32, 64, 1), (64, 128, 2), (128, 128, 1),
                      (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
    [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]


@functools.lru_cache(maxsize=None)
def _parsed(path: Path) -> Config:
    return Config.fromfile(str(path))


def load_config(path: Path) -> Config:
    """A fresh copy of a config, parsed once (resolving the mmpretrain::
    bases costs seconds)."""
    return copy.deepcopy(_parsed(path))


def released_weights(model: str) -> str:
    """The checkpoint URL of ``model`` in mmpretrain's ResNet metafile."""
    metafile = Path(mmpretrain.__file__).parent / '.mim' / 'configs' / \
        'resnet' / 'metafile.yml'
    entries = yaml.safe_load(metafile.read_text())['Models']
    return next(e['Weights'] for e in entries if e['Name'] == model)


def test_mobilenetv1_has_the_dkd_layout_and_parameter_count():
    model = CLS_MODELS.build(load_config(MODEL_DIR / 'mobilenetv1.py').model)
    assert sum(p.numel() for p in model.parameters()) == 4_231_976
    convs = [m for m in model.backbone.modules()
             if isinstance(m, torch.nn.Conv2d)]
    expected = [(32, 3, 3, 3, 2)]
    for cin, cout, stride in MOBILENETV1_BLOCKS:
        expected += [(cin, 1, 3, 3, stride), (cout, cin, 1, 1, 1)]
    assert [tuple(c.weight.shape) + c.stride[:1] for c in convs] == expected
    assert model.head.fc.in_features == 1024


def test_mobilenetv1_stage_outputs_and_freezing():
    backbone = MobileNetV1(out_indices=(0, 1, 2, 3), frozen_stages=2)
    backbone.train()
    outs = backbone(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [(1, 128, 56, 56),
                                             (1, 256, 28, 28),
                                             (1, 512, 14, 14),
                                             (1, 1024, 7, 7)]
    frozen = [backbone.stem, backbone.stages[0], backbone.stages[1]]
    for module in frozen:
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert backbone.stages[2].training
    assert all(p.requires_grad for p in backbone.stages[2].parameters())
    with pytest.raises(ValueError, match='out_indices'):
        MobileNetV1(out_indices=(4, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        MobileNetV1(frozen_stages=5)


def test_every_pair_and_method_has_one_config():
    expected = {
        f'{method}_logits_{pair}_8xb32_in1k.py'
        for method in METHODS for pair in PAIRS
    }
    assert {p.name for p in CONFIGS} == expected


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: p.stem)
def test_config_follows_the_recipe(config):
    cfg = load_config(config)
    method, pair = config.stem.split('_logits_')
    pair = pair.replace('_8xb32_in1k', '')
    assert_imagenet_recipe(cfg)
    model = cfg.model
    assert model.type == 'StrictSingleTeacherDistill'
    teacher = PAIRS[pair]
    entry = METAFILE_ENTRIES[config.stem]
    assert entry['Config'] == str(config.relative_to(REPO))
    facts = entry['Metadata']
    assert model.teacher_ckpt == facts['Teacher Checkpoint'] == \
        released_weights(f'{teacher}_8xb32_in1k')
    assert cfg.optim_wrapper.optimizer.lr == facts['Learning Rate']
    student = pair.split('_')[1]
    assert (facts['Teacher'], facts['Student']) == (teacher, student)
    for network, name in ((model.teacher, teacher),
                          (model.architecture, student)):
        assert network.cfg_path == \
            f'loca_mm::_base_/models/imagenet/{name}.py'
        assert network.pretrained is False
        assert resolve_model_config(network) == load_config(
            MODEL_DIR / f'{name}.py').model
    assert resolve_model_config(model.teacher).backbone.depth == int(
        teacher[len('resnet'):])
    losses = model.distiller.distill_losses
    distill = losses.loss_distill
    assert distill.tau == 1.0
    if method in ('kd', 'loca'):
        assert (losses.loss_ce.loss_weight, distill.loss_weight) == (0.5, 0.5)
        assert distill.type == 'LoCaLoss'
        assert distill.calibrate == ('wrong' if method == 'loca' else 'none')
    else:
        assert losses.loss_ce.loss_weight == 1.0
        assert distill.type == 'DKDLoCaLoss'
        assert (distill.tckd_weight, distill.warmup_epochs) == (1.0, 1)
        assert distill.nckd_weight == facts['NCKD Weight'] == (
            2.0 if student == 'mobilenetv1' else 0.5)
        assert distill.calibrate == ('wrong' if method == 'dkdloca' else
                                     'none')
    if distill.calibrate == 'wrong':
        assert distill.alpha == 0.9


def test_metafile_lists_every_config_and_the_readme_table_is_generated():
    assert set(METAFILE_ENTRIES) == {c.stem for c in [*CONFIGS, VANILLA]}
    assert not render_readme(
        str(DISTILL_DIR / 'metafile.yml'), str(DISTILL_DIR / 'README.md'),
        check=True), ('configs/distill/imagenet/README.md is out of date: run '
                      'python tools/analysis_tools/render_config_readme.py')


def test_vanilla_mobilenetv1_follows_the_recipe():
    cfg = load_config(VANILLA)
    assert_imagenet_recipe(cfg)
    assert cfg.model.backbone.type == 'MobileNetV1'


def assert_imagenet_recipe(cfg: Config) -> None:
    """8 GPUs x 32 images, lr 0.1 per 256, 100 epochs, decay at 30/60/90."""
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.auto_scale_lr.base_batch_size == 256
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum,
            optimizer.weight_decay) == ('SGD', 0.1, 0.9, 1e-4)
    assert cfg.train_cfg.max_epochs == 100
    assert cfg.param_scheduler.milestones == [30, 60, 90]
    assert cfg.param_scheduler.gamma == 0.1
    assert cfg.train_dataloader.dataset.type == 'LocalImageNet'
    assert [(t.type, t.get('scale') or t.get('crop_size'))
            for t in cfg.train_dataloader.dataset.pipeline] == [
                ('LoadImageFromFile', None), ('RandomResizedCrop', 224),
                ('RandomFlip', None), ('PackInputs', None)
            ]
    assert [(t.type, t.get('scale') or t.get('crop_size'))
            for t in cfg.val_dataloader.dataset.pipeline] == [
                ('LoadImageFromFile', None), ('ResizeEdge', 256),
                ('CenterCrop', 224), ('PackInputs', None)
            ]
    assert cfg.custom_imports.imports == ['loca_mm']


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
    """2 training and 2 validation colour images (the runs use one of each,
    through the configs' 224 pipelines)."""
    root = tmp_path_factory.mktemp('imagenet')
    write_imagenet_layout(
        str(root), 2, train_per_class=1, val_per_class=1, size=(64, 80))
    return str(root)


@pytest.fixture(scope='module')
def teacher_ckpts(tmp_path_factory):
    """Checkpoints of freshly built ResNet-34 and ResNet-50 teachers."""
    folder = tmp_path_factory.mktemp('teachers')
    paths = {}
    for teacher in set(PAIRS.values()):
        cfg = load_config(MODEL_DIR / f'{teacher}.py')
        paths[teacher] = str(folder / f'{teacher}.pth')
        torch.save({'state_dict': CLS_MODELS.build(cfg.model).state_dict()},
                   paths[teacher])
    return paths


@pytest.fixture
def quiet_runner(monkeypatch):
    quiet_runner_reports(monkeypatch)


def short_run(config: Path, data_root: str, work_dir: str,
              teacher_ckpt: str = None) -> Runner:
    """A runner for 1 epoch of one image (1 iteration), a validation on one
    image, and no checkpoint, on the tiny data set.

    The crops are 112 instead of 224 pixels (the convolutions cost a quarter;
    the networks end in global pooling): the pipelines themselves are
    checked in assert_imagenet_recipe.
    """
    cfg = load_config(config)
    cfg.train_dataloader.dataset.pipeline[1].scale = 112
    cfg.val_dataloader.dataset.pipeline[1].scale = 128
    cfg.val_dataloader.dataset.pipeline[2].crop_size = 112
    options = dataloader_options(data_root, batch_size=1, in_process=True)
    options.update({
        'train_dataloader.dataset.indices': 1,
        'val_dataloader.dataset.indices': 1,
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint': None,
        'work_dir': work_dir,
    })
    if teacher_ckpt:
        options['model.teacher_ckpt'] = teacher_ckpt
    cfg.merge_from_dict(options)
    return Runner.from_cfg(cfg)


def current(hub, key: str) -> float:
    assert key in hub.log_scalars, f'{key} not logged'
    return float(hub.log_scalars[key].current())


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_iteration_and_validates(config, tiny_imagenet,
                                                   teacher_ckpts, tmp_path,
                                                   quiet_runner):
    teacher = PAIRS[config.stem.split('_logits_')[1].replace(
        '_8xb32_in1k', '')]
    runner = short_run(config, tiny_imagenet, str(tmp_path),
                       teacher_ckpts[teacher])
    model = runner.model
    student_before = {
        k: v.clone() for k, v in model.architecture.state_dict().items()
    }
    runner.train()

    assert runner.iter == 1
    hub = runner.message_hub
    ce_weight = model.distiller.distill_losses['loss_ce'].loss_weight
    # A fresh 1000-class head predicts nearly uniformly: CE is about ln 1000.
    assert current(hub, 'train/distill.loss_ce') == pytest.approx(
        ce_weight * math.log(1000), rel=0.05)
    assert math.isfinite(current(hub, 'train/distill.loss_distill'))
    # A random teacher is wrong on the images: calibrated iff configured.
    calibrated = model.distiller.distill_losses['loss_distill'].calibrate
    assert ('train/loca_ratio' in hub.log_scalars) == (calibrated == 'wrong')
    if calibrated == 'wrong':
        assert current(hub, 'train/loca_ratio') == 1.0
    # One SGD step moved the student; the frozen teacher is its checkpoint.
    moved = model.architecture.state_dict()['head.fc.weight']
    assert not torch.equal(moved, student_before['head.fc.weight'])
    saved = torch.load(teacher_ckpts[teacher])['state_dict']
    for key, value in model.teacher.state_dict().items():
        torch.testing.assert_close(value, saved[key], msg=key)
    assert 0 <= current(hub, 'val/accuracy/top1') <= 100
    assert 0 <= current(hub, 'val/teacher/accuracy/top1') <= 100


def test_vanilla_mobilenetv1_trains_one_iteration_and_validates(
        tiny_imagenet, tmp_path, quiet_runner):
    runner = short_run(VANILLA, tiny_imagenet, str(tmp_path))
    runner.train()
    assert runner.iter == 1
    hub = runner.message_hub
    assert current(hub, 'train/loss') == pytest.approx(
        math.log(1000), rel=0.05)
    assert 0 <= current(hub, 'val/accuracy/top1') <= 100


def test_converted_resnet18_student_loads_into_mmpretrains_config():
    # The converter's output for the ResNet-34 -> ResNet-18 configs loads
    # strictly into mmpretrain's own ResNet-18 ImageNet classifier.
    from mmrazor.registry import MODELS as RAZOR_MODELS
    converter = load_tool('model_converters/convert_kd_ckpt_to_student.py')
    cfg = load_config(DISTILL_DIR /
                      'loca_logits_resnet34_resnet18_8xb32_in1k.py')
    cfg.model.teacher_ckpt = None
    cfg.model.allow_random_teacher = True
    cfg.model.data_preprocessor = cfg.data_preprocessor
    algorithm = RAZOR_MODELS.build(cfg.model)
    student = converter.student_state_dict(algorithm.state_dict())
    mmpretrain_cfg = Path(mmpretrain.__file__).parent / '.mim' / 'configs' / \
        'resnet' / 'resnet18_8xb32_in1k.py'
    plain = CLS_MODELS.build(Config.fromfile(str(mmpretrain_cfg)).model)
    plain.load_state_dict(student, strict=True)
    torch.testing.assert_close(plain.head.fc.weight,
                               algorithm.architecture.head.fc.weight)
