"""Every CIFAR-100 config trains, validates and follows the paper's recipe."""
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from mmengine.config import Config

from loca_mm.utils import resolve_model_config
from tools.analysis_tools.metafile import (TABLE_BEGIN, TABLE_END,
                                          distillation_pairs, load_models,
                                          render_readme, results_table,
                                          trained_top1)

from _cifar100_utils import (DISTILL_DIR, MODEL_DIR, REPO, VANILLA_DIR,
                             build_runner, cifar_files_unchecked,  # noqa: F401
                             random_split, save_fresh_model,
                             short_run_options, write_cifar100)
from _support import quiet_runner_reports

# DIST and DIST+LoCa exist for one pair; tests/test_dist_configs.py has them.
DIST_CONFIGS = set(DISTILL_DIR.glob('dist*_logits_*.py'))
# So do the Logit Standardization methods (tests/test_logit_standardization
# .py checks their settings; they train below with the others).
LS_CONFIGS = set(DISTILL_DIR.glob('*ls_logits_*.py'))
CONFIGS = sorted({*DISTILL_DIR.glob('*.py'), *VANILLA_DIR.glob('*.py')} -
                 DIST_CONFIGS)
METAFILE = DISTILL_DIR / 'metafile.yml'
# The metafile is the one place of each pair's facts: teacher, student, lr,
# DKD's beta (NCKD Weight) and the published top-1 of teacher, student, KD
# and DKD. The configs are checked against it.
METAFILE_MODELS = load_models(str(METAFILE))
PAIRS = distillation_pairs(METAFILE_MODELS)
METHODS = {'KD': 'kd', 'LoCa': 'loca', 'DKD': 'dkd', 'DKD+LoCa': 'dkdloca'}
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


def entry_of(config: Path) -> dict:
    """The metafile's entry of a config."""
    (entry, ) = [e for e in METAFILE_MODELS if e['Name'] == config.stem]
    assert entry['Config'] == str(config.relative_to(REPO))
    return entry


def experiment_name(model: str) -> str:
    """A model's name inside experiment file names (wrn_40_2 -> wrn-40-2)."""
    return model.replace('_', '-')


def pair_config(method: str, teacher: str, student: str) -> Path:
    return DISTILL_DIR / (f'{method}_logits_{experiment_name(teacher)}_'
                          f'{experiment_name(student)}_1xb64_cifar100.py')


def model_of(name: str) -> dict:
    return Config.fromfile(str(MODEL_DIR / f'{name}.py')).model.to_dict()


def assert_refers_to(network: dict, name: str) -> None:
    """A config's student or teacher is a reference to the model file
    ``name`` of the zoo that builds that model."""
    assert network.cfg_path == f'loca_mm::_base_/models/cifar100/{name}.py'
    assert network.pretrained is False
    assert resolve_model_config(network).to_dict() == model_of(name)


def assert_cifar100_recipe(cfg: Config) -> None:
    """What every CIFAR-100 config shares (the published CRD/DKD recipe)."""
    assert cfg.train_dataloader.batch_size == 64
    assert cfg.train_dataloader.dataset.type == 'LocalCIFAR100'
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
    assert len(PAIRS) == 11
    expected = {
        pair_config(method, *pair)
        for pair in PAIRS for method in METHODS.values()
    }
    assert set(DISTILL_DIR.glob('*.py')) - DIST_CONFIGS - LS_CONFIGS == \
        expected
    models = {model for pair in PAIRS for model in pair}
    assert {p.name for p in VANILLA_DIR.glob('*.py')} == {
        f'{experiment_name(m)}_1xb64_cifar100.py'
        for m in models
    }


@pytest.mark.parametrize('collection', METHODS)
@pytest.mark.parametrize('pair', list(PAIRS), ids='->'.join)
def test_pair_config_follows_the_recipe(pair, collection):
    teacher, student = pair
    method = METHODS[collection]
    entry = PAIRS[pair][collection]
    assert entry['Config'] == str(
        pair_config(method, teacher, student).relative_to(REPO))
    facts = entry['Metadata']
    cfg = Config.fromfile(str(pair_config(method, teacher, student)))
    model = cfg.model
    assert model.type == 'StrictSingleTeacherDistill'
    assert_refers_to(model.architecture, student)
    assert_refers_to(model.teacher, teacher)
    assert model.teacher_ckpt == facts['Teacher Checkpoint'] == \
        f'checkpoints/cifar100/{teacher}.pth'
    # The student's CE is the distiller's loss_ce, not the head's own loss.
    assert model.calculate_student_loss is False
    losses = model.distiller.distill_losses
    assert set(losses) == {'loss_ce', 'loss_distill'}
    assert losses.loss_ce.loss_weight == METHOD_LOSSES[method]['ce']
    expected = dict(METHOD_LOSSES[method]['distill'])
    if method.startswith('dkd'):
        expected['nckd_weight'] = facts['NCKD Weight']
    else:
        assert 'NCKD Weight' not in facts
    assert {k: losses.loss_distill.get(k) for k in expected} == expected

    optimizer = cfg.optim_wrapper.optimizer
    lr = 0.01 if student in SMALL_LR_MODELS else 0.05
    assert (optimizer.type, optimizer.lr, optimizer.momentum,
            optimizer.weight_decay) == ('SGD', facts['Learning Rate'], 0.9,
                                        5e-4)
    assert optimizer.lr == lr
    assert_cifar100_recipe(cfg)
    assert cfg.val_cfg.type == 'TeacherOnceValLoop'


@pytest.mark.parametrize(
    'config', sorted(VANILLA_DIR.glob('*.py')), ids=lambda p: p.stem)
def test_vanilla_config_follows_the_recipe(config):
    name = config.name.split('_1xb64')[0].replace('-', '_')
    cfg = Config.fromfile(str(config))
    assert cfg.model.to_dict() == model_of(name)
    facts = entry_of(config)['Metadata']
    assert facts['Network'] == name
    lr = 0.01 if name in SMALL_LR_MODELS else 0.05
    assert cfg.optim_wrapper.optimizer.lr == facts['Learning Rate'] == lr
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


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: p.stem)
def test_config_trains_two_iterations_and_validates(config, tiny_cifar100,
                                                    fresh_teacher_ckpt,
                                                    tmp_path, monkeypatch):
    # test_config_dumps_and_reloads covers the dumped config.
    quiet_runner_reports(monkeypatch)
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
    if method in ('loca', 'dkdloca', 'locals', 'dkdlocals'):
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


def test_metafile_lists_every_config_once():
    # (load_models refuses two entries of one name.)
    assert {e['Name'] for e in METAFILE_MODELS} == {c.stem for c in CONFIGS}
    for config in CONFIGS:
        entry_of(config)


@pytest.mark.parametrize('pair', list(PAIRS), ids='->'.join)
def test_the_four_entries_of_a_pair_agree(pair):
    """Each fact of a pair has one value: the four methods' entries agree on
    it, and the teacher's and student's published top-1 are those of their
    plain training configs' entries."""
    teacher, student = pair
    entries = PAIRS[pair]
    shared = {
        (e['Metadata']['Teacher Checkpoint'], e['Metadata']['Learning Rate'],
         e['Metadata']['Published Top 1 Accuracy']['Teacher'],
         e['Metadata']['Published Top 1 Accuracy']['Student'])
        for e in entries.values()
    }
    assert len(shared) == 1, shared
    assert entries['DKD']['Metadata']['NCKD Weight'] == \
        entries['DKD+LoCa']['Metadata']['NCKD Weight']
    for method, entry in entries.items():
        published = entry['Metadata']['Published Top 1 Accuracy']
        # Only the baselines have published distilled numbers; LoCa's are
        # this repository's to produce.
        assert ('Distilled' in published) == (method in ('KD', 'DKD'))
        assert trained_top1(entry) is None or method in ('LoCa', 'DKD+LoCa')
    networks = {
        e['Metadata']['Network']: e['Metadata']['Published Top 1 Accuracy']
        ['Network'] for e in METAFILE_MODELS
        if e['In Collection'] == 'Vanilla'
    }
    published = entries['KD']['Metadata']['Published Top 1 Accuracy']
    assert (networks[teacher], networks[student]) == (published['Teacher'],
                                                      published['Student'])


def test_readme_table_is_generated_from_the_metafile():
    assert not render_readme(str(METAFILE), str(DISTILL_DIR / 'README.md'),
                             check=True), (
        'configs/distill/cifar100/README.md is out of date: run python '
        'tools/analysis_tools/render_config_readme.py')
    table = results_table(str(METAFILE))
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == len(PAIRS)
    for row, ((teacher, student), entries) in zip(rows, PAIRS.items()):
        cells = [cell.strip() for cell in row.split('|')[1:-1]]
        assert cells[0] == f'{teacher} -> {student}'
        published = entries['KD']['Metadata']['Published Top 1 Accuracy']
        assert [float(x) for x in cells[1:5]] == [
            published['Teacher'], published['Student'], published['Distilled'],
            entries['DKD']['Metadata']['Published Top 1 Accuracy']['Distilled']
        ]
        assert cells[5:7] == ['not trained yet'] * 2
        links = re.findall(r'\[([^]]+)\]\(\./([^)]+)\)', cells[7])
        assert [method for method, _ in links] == list(METHODS)
        for method, link in links:
            assert link == pair_config(METHODS[method], teacher,
                                       student).name


def write_trained_metafile(folder: Path, loca_top1) -> Path:
    """A copy of the metafile with a LoCa result for the first pair, in the
    README's folder layout (configs/distill/cifar100/)."""
    text = METAFILE.read_text()
    name = pair_config('loca', *next(iter(PAIRS))).stem
    entry = f'  - Name: {name}\n'
    config_line = f'    Config: configs/distill/cifar100/{name}.py\n'
    start = text.index(entry)
    end = text.index(config_line, start) + len(config_line)
    result = ('    Results:\n      - Task: Image Classification\n'
              f'        Dataset: CIFAR-100\n        Metrics:\n'
              f'          Top 1 Accuracy: {loca_top1}\n')
    folder = folder / 'configs' / 'distill' / 'cifar100'
    folder.mkdir(parents=True)
    path = folder / 'metafile.yml'
    path.write_text(text[:end] + result + text[end:])
    return path


def test_a_trained_result_reaches_the_readme_table(tmp_path):
    metafile = write_trained_metafile(tmp_path, 71.456)
    readme = metafile.parent / 'README.md'
    before = (DISTILL_DIR / 'README.md').read_text()
    readme.write_text(before)
    assert render_readme(str(metafile), str(readme))
    row = next(line for line in readme.read_text().splitlines()
               if line.startswith('| resnet56 -> resnet20 |'))
    assert [c.strip() for c in row.split('|')[6:8]] == [
        '71.46', 'not trained yet'
    ]
    # Only the table changed; nothing outside the markers.
    after = readme.read_text()
    assert after.split(TABLE_BEGIN)[0] == before.split(TABLE_BEGIN)[0]
    assert after.split(TABLE_END)[1] == before.split(TABLE_END)[1]
    assert not render_readme(str(metafile), str(readme), check=True)


def test_bad_results_and_readmes_are_refused(tmp_path):
    metafile = write_trained_metafile(tmp_path, "'n/a'")
    with pytest.raises(ValueError, match='must be one result'):
        results_table(str(metafile))
    readme = tmp_path / 'README.md'
    readme.write_text('# no markers\n')
    with pytest.raises(ValueError, match='needs one line'):
        render_readme(str(METAFILE), str(readme))
    assert readme.read_text() == '# no markers\n'
