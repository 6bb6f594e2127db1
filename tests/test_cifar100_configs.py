"""Every CIFAR-100 config trains, validates and follows the paper's recipe."""
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
import yaml
from mmengine.config import Config

from _cifar100_utils import (DISTILL_DIR, MODEL_DIR, VANILLA_DIR,
                             build_runner, cifar_files_unchecked,  # noqa: F401
                             one_torch_thread,  # noqa: F401
                             random_split, save_fresh_model,
                             short_run_options, write_cifar100)

# DIST and DIST+LoCa exist for one pair; tests/test_dist_configs.py has them.
DIST_CONFIGS = set(DISTILL_DIR.glob('dist*_logits_*.py'))
CONFIGS = sorted({*DISTILL_DIR.glob('*.py'), *VANILLA_DIR.glob('*.py')} -
                 DIST_CONFIGS)
METHODS = ('kd', 'loca', 'dkd', 'dkdloca')

# REFERENCE.md: the 11 CIFAR-100 pairs with DKD's beta, the lr (0.01 for
# ShuffleNet/MobileNet students, else 0.05) and the published top-1 of
# teacher, student, KD and DKD.
PAIRS = {
    ('resnet56', 'resnet20'): dict(
        beta=2.0, lr=0.05, top1=(72.34, 69.06, 70.66, 71.97)),
    ('resnet110', 'resnet32'): dict(
        beta=2.0, lr=0.05, top1=(74.31, 71.14, 73.08, 74.11)),
    ('resnet32x4', 'resnet8x4'): dict(
        beta=8.0, lr=0.05, top1=(79.42, 72.50, 73.33, 76.32)),
    ('wrn_40_2', 'wrn_16_2'): dict(
        beta=6.0, lr=0.05, top1=(75.61, 73.26, 74.92, 76.23)),
    ('wrn_40_2', 'wrn_40_1'): dict(
        beta=6.0, lr=0.05, top1=(75.61, 71.98, 73.54, 74.81)),
    ('vgg13', 'vgg8'): dict(
        beta=6.0, lr=0.05, top1=(74.64, 70.36, 72.98, 74.68)),
    ('resnet32x4', 'shufflev1'): dict(
        beta=8.0, lr=0.01, top1=(79.42, 70.50, 74.07, 76.45)),
    ('wrn_40_2', 'shufflev1'): dict(
        beta=8.0, lr=0.01, top1=(75.61, 70.50, 74.83, 76.70)),
    ('vgg13', 'mobilenetv2'): dict(
        beta=6.0, lr=0.01, top1=(74.64, 64.60, 67.37, 69.71)),
    ('resnet50', 'mobilenetv2'): dict(
        beta=8.0, lr=0.01, top1=(79.34, 64.60, 67.35, 70.35)),
    ('resnet32x4', 'shufflev2'): dict(
        beta=8.0, lr=0.01, top1=(79.42, 71.82, 74.45, 77.07)),
}
SMALL_LR_MODELS = {'shufflev1', 'shufflev2', 'mobilenetv2'}
# KD: CE 0.1, KD 0.9, tau 4. DKD: CE 1, TCKD 1, tau 4, warm-up 20 epochs.
# LoCa and DKD+LoCa add calibration of the wrong samples with alpha 0.9.
METHOD_LOSSES = {
    'kd': dict(ce=0.1, distill=dict(type='LoCaLoss', tau=4.0,
                                    loss_weight=0.9, calibrate='none')),
    'loca': dict(ce=0.1, distill=dict(type='LoCaLoss', tau=4.0,
                                      loss_weight=0.9, calibrate='wrong',
                                      alpha=0.9)),
    'dkd': dict(ce=1.0, distill=dict(type='DKDLoCaLoss', tau=4.0,
                                     tckd_weight=1.0, warmup_epochs=20,
                                     calibrate='none')),
    'dkdloca': dict(ce=1.0, distill=dict(type='DKDLoCaLoss', tau=4.0,
                                         tckd_weight=1.0, warmup_epochs=20,
                                         calibrate='wrong', alpha=0.9)),
}


def experiment_name(model: str) -> str:
    """A model's name inside experiment file names (wrn_40_2 -> wrn-40-2)."""
    return model.replace('_', '-')


def pair_config(method: str, teacher: str, student: str) -> Path:
    return DISTILL_DIR / (f'{method}_logits_{experiment_name(teacher)}_'
                          f'{experiment_name(student)}_1xb64_cifar100.py')


def model_of(name: str) -> dict:
    return Config.fromfile(str(MODEL_DIR / f'{name}.py')).model.to_dict()


def assert_cifar100_recipe(cfg: Config) -> None:
    """What every CIFAR-100 config shares (REFERENCE.md's recipe)."""
    assert cfg.train_dataloader.batch_size == 64
    assert cfg.train_dataloader.dataset.type == 'CIFAR100'
    assert cfg.train_dataloader.dataset.data_root == 'data/cifar100'
    assert cfg.train_cfg.max_epochs == 240
    scheduler = cfg.param_scheduler
    assert (scheduler.type, scheduler.milestones,
            scheduler.gamma) == ('MultiStepLR', [150, 180, 210], 0.1)
    crop, flip = cfg.train_dataloader.dataset.pipeline[:2]
    assert (crop.crop_size, crop.padding, flip.prob) == (32, 4, 0.5)
    np.testing.assert_allclose(
        np.array(cfg.data_preprocessor.mean) / 255,
        [0.5071, 0.4867, 0.4408])
    np.testing.assert_allclose(
        np.array(cfg.data_preprocessor.std) / 255, [0.2675, 0.2565, 0.2761])
    assert cfg.custom_imports.imports == ['loca_mm']


def test_every_pair_and_method_has_exactly_one_config():
    expected = {
        pair_config(method, *pair)
        for pair in PAIRS for method in METHODS
    }
    assert set(DISTILL_DIR.glob('*.py')) - DIST_CONFIGS == expected
    models = {model for pair in PAIRS for model in pair}
    assert {p.name for p in VANILLA_DIR.glob('*.py')} == {
        f'{experiment_name(m)}_1xb64_cifar100.py'
        for m in models
    }


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('pair', list(PAIRS), ids='->'.join)
def test_pair_config_follows_the_recipe(pair, method):
    teacher, student = pair
    cfg = Config.fromfile(str(pair_config(method, teacher, student)))
    model = cfg.model
    assert model.type == 'StrictSingleTeacherDistill'
    assert model.architecture.to_dict() == model_of(student)
    assert model.teacher.to_dict() == model_of(teacher)
    assert model.teacher_ckpt == f'checkpoints/cifar100/{teacher}.pth'
    # The student's CE is the distiller's loss_ce, not the head's own loss.
    assert model.calculate_student_loss is False
    losses = model.distiller.distill_losses
    assert set(losses) == {'loss_ce', 'loss_distill'}
    assert losses.loss_ce.loss_weight == METHOD_LOSSES[method]['ce']
    expected = dict(METHOD_LOSSES[method]['distill'])
    if method.startswith('dkd'):
        expected['nckd_weight'] = PAIRS[pair]['beta']
    assert {k: losses.loss_distill.get(k) for k in expected} == expected

    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum,
            optimizer.weight_decay) == ('SGD', PAIRS[pair]['lr'], 0.9, 5e-4)
    assert_cifar100_recipe(cfg)
    assert cfg.val_cfg.type == 'TeacherOnceValLoop'


@pytest.mark.parametrize(
    'config', sorted(VANILLA_DIR.glob('*.py')), ids=lambda p: p.stem)
def test_vanilla_config_follows_the_recipe(config):
    name = config.name.split('_1xb64')[0].replace('-', '_')
    cfg = Config.fromfile(str(config))
    assert cfg.model.to_dict() == model_of(name)
    lr = 0.01 if name in SMALL_LR_MODELS else 0.05
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert_cifar100_recipe(cfg)


@pytest.fixture(scope='session')
def tiny_cifar100(tmp_path_factory, cifar_files_unchecked):  # noqa: F811
    """4 training and 2 test images in CIFAR-100's format: 2 training
    iterations and 1 validation iteration of batch 2 per epoch."""
    root = tmp_path_factory.mktemp('cifar100')
    write_cifar100(str(root), random_split(4, seed=0), random_split(2, seed=1))
    return str(root)


@pytest.fixture(scope='session')
def fresh_teacher_ckpt(tmp_path_factory):
    """A checkpoint of a freshly built teacher, one per teacher model."""
    folder = tmp_path_factory.mktemp('teachers')
    saved = {}

    def get(teacher_cfg: dict, name: str) -> str:
        if name not in saved:
            saved[name] = str(folder / name)
            save_fresh_model(teacher_cfg, saved[name])
        return saved[name]

    return get


def scalar(hub, key: str) -> float:
    assert key in hub.log_scalars, f'{key} not logged'
    return float(hub.log_scalars[key].current())


def skip_runner_reports(monkeypatch) -> None:
    """Skip what a runner only writes to logs: the environment report
    (subprocesses, ~0.5 s) and the yapf-formatted config text (3 times per
    runner, ~0.3 s each). test_config_dumps_and_reloads covers the dump."""
    monkeypatch.setattr('mmengine.runner.runner.collect_env', dict)
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))


@pytest.mark.usefixtures('one_torch_thread')
@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: p.stem)
def test_config_trains_two_iterations_and_validates(config, tiny_cifar100,
                                                    fresh_teacher_ckpt,
                                                    tmp_path, monkeypatch):
    skip_runner_reports(monkeypatch)
    cfg = Config.fromfile(str(config))
    teacher_ckpt = None
    if 'teacher' in cfg.model:
        teacher_ckpt = fresh_teacher_ckpt(
            cfg.model.teacher, Path(cfg.model.teacher_ckpt).name)
    runner = build_runner(
        cfg,
        short_run_options(tiny_cifar100, str(tmp_path), batch_size=2,
                          teacher_ckpt=teacher_ckpt))
    runner.train()

    assert runner.iter == 2
    hub = runner.message_hub
    train_losses = {
        key: scalar(hub, key)
        for key in hub.log_scalars if re.fullmatch(r'train/.*loss.*', key)
    }
    assert all(math.isfinite(v) for v in train_losses.values()), train_losses
    top1 = scalar(hub, 'val/accuracy/top1')
    assert 0 <= top1 <= 100
    if teacher_ckpt is None:
        assert set(train_losses) == {'train/loss'}
        return
    method = config.name.split('_logits_')[0]
    assert set(train_losses) == {
        'train/loss', 'train/distill.loss_ce', 'train/distill.loss_distill'
    }
    assert train_losses['train/distill.loss_ce'] > 0
    assert train_losses['train/distill.loss_distill'] >= 0
    assert 0 <= scalar(hub, 'val/teacher/accuracy/top1') <= 100
    # Only the LoCa methods calibrate; a random teacher is almost always
    # wrong, so nearly every sample is calibrated.
    if method in ('loca', 'dkdloca'):
        assert scalar(hub, 'train/loca_ratio') >= 0.5
    else:
        assert 'train/loca_ratio' not in hub.log_scalars


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: p.stem)
def test_config_dumps_and_reloads(config, tmp_path):
    cfg = Config.fromfile(str(config))
    dumped = tmp_path / config.name
    cfg.dump(str(dumped))
    assert Config.fromfile(str(dumped)).to_dict() == cfg.to_dict()


MISMATCH_CONFIG = DISTILL_DIR / \
    'kd_logits_resnet32x4_resnet8x4_1xb64_cifar100.py'


@pytest.mark.parametrize('other', ['resnet8x4', 'resnet56'])
def test_teacher_checkpoint_of_another_network_stops_the_run(
        other, tiny_cifar100, tmp_path):
    # resnet8x4 has resnet32x4's widths and fewer blocks (missing keys);
    # resnet56 has more blocks (unexpected keys) and other widths.
    wrong_ckpt = str(tmp_path / f'{other}.pth')
    wrong = save_fresh_model(model_of(other), wrong_ckpt)
    options = short_run_options(
        tiny_cifar100, str(tmp_path), teacher_ckpt=wrong_ckpt)
    with pytest.raises(RuntimeError) as error:
        build_runner(MISMATCH_CONFIG, options)
    message = str(error.value)
    assert 'does not fit the teacher model' in message
    counts = re.search(r'\((\d+) missing, (\d+) unexpected, (\d+) mis-shaped',
                       message)
    assert counts, message
    teacher = save_fresh_model(model_of('resnet32x4'), str(tmp_path / 't'))
    mis_shaped = sum(wrong[k].shape != teacher[k].shape
                     for k in set(wrong) & set(teacher))
    assert tuple(map(int, counts.groups())) == (len(set(teacher) - set(wrong)),
                                                len(set(wrong) - set(teacher)),
                                                mis_shaped)
    assert any(map(int, counts.groups()))


def test_unconverted_repdistiller_teacher_stops_the_run(
        tiny_cifar100, tmp_path):
    # A released teacher holds {'model': state_dict} with its own key names.
    weights = save_fresh_model(model_of('resnet32x4'), str(tmp_path / 'x'))
    release = str(tmp_path / 'ckpt_epoch_240.pth')
    torch.save({
        'model': {k.split('.', 1)[1]: v
                  for k, v in weights.items()},
        'epoch': 240
    }, release)
    options = short_run_options(
        tiny_cifar100, str(tmp_path), teacher_ckpt=release)
    with pytest.raises(RuntimeError,
                       match='repdistiller_to_mmpretrain') as error:
        build_runner(MISMATCH_CONFIG, options)
    assert 'does not fit the teacher model' in str(error.value)


def trained_top1(entry: dict) -> Optional[float]:
    """The top-1 a metafile entry reports, None while it is not trained."""
    if not entry['Results']:
        assert entry['Metadata']['Status'] == 'not trained yet'
        return None
    (result, ) = entry['Results']
    assert result['Dataset'] == 'CIFAR-100'
    return result['Metrics']['Top 1 Accuracy']


def read_metafile() -> dict:
    metafile = yaml.safe_load((DISTILL_DIR / 'metafile.yml').read_text())
    return {entry['Name']: entry for entry in metafile['Models']}


def test_metafile_lists_every_config_with_the_published_top1():
    entries = read_metafile()
    assert set(entries) == {config.stem for config in CONFIGS}
    repo = DISTILL_DIR.parents[2]
    for entry in entries.values():
        assert (repo / entry['Config']).stem == entry['Name']
        trained_top1(entry)
    for (teacher, student), pair in PAIRS.items():
        teacher_top1, student_top1, kd, dkd = pair['top1']
        for method, distilled in (('kd', kd), ('dkd', dkd), ('loca', None),
                                  ('dkdloca', None)):
            entry = entries[pair_config(method, teacher, student).stem]
            published = entry['Metadata']['Published Top 1 Accuracy']
            assert published == dict(
                Teacher=teacher_top1, Student=student_top1,
                **({} if distilled is None else dict(Distilled=distilled)))
            assert entry['Metadata']['Teacher Checkpoint'] == \
                f'checkpoints/cifar100/{teacher}.pth'


def test_readme_table_has_every_pair_and_loca_results_or_not_trained_yet():
    lines = (DISTILL_DIR / 'README.md').read_text().splitlines()
    header = next(i for i, line in enumerate(lines)
                  if line.startswith('| Teacher -> student |'))
    rows = []
    for line in lines[header + 2:]:  # after the header and its separator
        if not line.startswith('|'):
            break
        rows.append(line)
    assert len(rows) == len(PAIRS)
    entries = read_metafile()
    for row, (names, pair) in zip(rows, PAIRS.items()):
        cells = [cell.strip() for cell in row.split('|')[1:-1]]
        assert cells[0].lower() == ' -> '.join(names)
        assert [float(x) for x in cells[1:5]] == list(pair['top1'])
        for cell, method in zip(cells[5:7], ('loca', 'dkdloca')):
            top1 = trained_top1(entries[pair_config(method, *names).stem])
            assert cell == ('not trained yet' if top1 is None else
                            f'{top1:.2f}')
        for method in METHODS:
            assert f'./{method}_logits_' in cells[7]
        for link in re.findall(r'\(\./([^)]+)\)', cells[7]):
            assert (DISTILL_DIR / link).is_file(), link
