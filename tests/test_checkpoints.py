"""loca_mm.utils.checkpoint and what uses it: damaged files are named, the
weights of every checkpoint layout are found and checked against the model
in one report, a teacher without weights is refused, and resuming is
refused where mmengine cannot continue a run exactly."""
import argparse
import ast
import io
import re
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from mmengine.runner import CheckpointLoader, Runner, load_checkpoint
from torch import nn

import loca_mm  # noqa: F401
from _imagenet_utils import lenet
from _support import REPO, load_tool, quiet_runner_reports
from loca_mm.utils import build_runner, check_checkpoint_schedule
from loca_mm.utils.checkpoint import (STUDENT_PREFIX, TEACHER_PREFIX,
                                      CheckpointMismatchError,
                                      DamagedCheckpointError,
                                      UnsafeCheckpointError, check_fit,
                                      load_checkpoint_file,
                                      save_checkpoint_file, state_dict_of,
                                      sub_state_dict)
from mmrazor.registry import MODELS as RAZOR_MODELS

# torch's advice for a file its safe mode cannot read, wrong for a damaged
# file: it must not reach the user.
TORCH_ADVICE = re.compile(r'weights_only.*False|Re-running', re.S)


def weights(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        'backbone.conv.weight': torch.randn(4, 1, 3, 3, generator=generator),
        'head.fc.weight': torch.randn(2, 4, generator=generator),
        'head.fc.bias': torch.zeros(2),
    }


@pytest.fixture(scope='module')
def good_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('ckpt') / 'good.pth'
    torch.save({'state_dict': weights(), 'meta': {'epoch': 3}}, path)
    return path


def write_config(path: Path, cfg: dict) -> Path:
    """A config file of plain values, one assignment a line."""
    path.write_text(''.join(f'{k} = {v!r}\n' for k, v in cfg.items()))
    return path


def assert_damaged(error, path) -> None:
    message = str(error.value)
    assert str(path) in message and 'damaged or not a checkpoint' in message
    assert not TORCH_ADVICE.search(message), message


# -- the safe loader ---------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(fraction=st.floats(0.0, 0.999))
def test_any_truncated_checkpoint_is_named_damaged(good_file, tmp_path_factory,
                                                   fraction):
    data = good_file.read_bytes()
    cut = tmp_path_factory.mktemp('cut') / 'epoch_3.pth'
    cut.write_bytes(data[:int(fraction * len(data))])
    with pytest.raises(DamagedCheckpointError) as error:
        load_checkpoint_file(str(cut))
    assert_damaged(error, cut)
    assert error.value.filename == str(cut)


@pytest.mark.parametrize('content', [
    b'', b'not a checkpoint at all ' * 20,
    b'version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n',
    bytes(range(256)) * 20
])
def test_garbage_is_named_damaged(content, tmp_path):
    path = tmp_path / 'teacher.pth'
    path.write_bytes(content)
    with pytest.raises(DamagedCheckpointError) as error:
        load_checkpoint_file(str(path))
    assert_damaged(error, path)


def test_truncated_legacy_format_is_named_damaged(tmp_path):
    path = tmp_path / 'ckpt_epoch_240.pth'
    torch.save({'model': weights()}, path,
               _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DamagedCheckpointError) as error:
        load_checkpoint_file(str(path))
    assert_damaged(error, path)


class Payload:
    """Unpickled, it would call print."""

    def __reduce__(self):
        return (print, ('executed', ))


@pytest.mark.parametrize('extra, refused', [
    (argparse.Namespace(lr=0.05), 'argparse.Namespace'),
    (Payload(), 'print'),
])
def test_refused_object_is_told_apart_from_damage(extra, refused, tmp_path,
                                                  capsys):
    path = tmp_path / 'release.pth'
    torch.save({'model': weights(), 'opt': extra}, path)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint_file(str(path))
    message = str(error.value)
    assert str(path) in message and refused in message
    assert 'damaged' not in message and not TORCH_ADVICE.search(message)
    assert 'executed' not in capsys.readouterr().out
    # Allowed explicitly, the one class loads.
    if isinstance(extra, argparse.Namespace):
        loaded = load_checkpoint_file(
            str(path), safe_globals=[argparse.Namespace])
        assert loaded['opt'].lr == 0.05


def test_mmengine_loaders_name_a_damaged_file(good_file, tmp_path):
    # load_from, resume, teacher_ckpt and init_cfg all read local files
    # through CheckpointLoader; loca_mm registers its loader there.
    cut = tmp_path / 'latest.pth'
    cut.write_bytes(good_file.read_bytes()[:100])
    with pytest.raises(DamagedCheckpointError) as error:
        CheckpointLoader.load_checkpoint(str(cut), map_location='cpu')
    assert_damaged(error, cut)
    with pytest.raises(DamagedCheckpointError):
        load_checkpoint(nn.Linear(1, 1), str(cut))
    assert CheckpointLoader.load_checkpoint(
        str(good_file))['meta'] == {'epoch': 3}


# -- finding the weights, and checking them ----------------------------------


def test_every_layout_gives_the_same_weights():
    expected = weights()
    ddp = {f'module.{k}': v for k, v in expected.items()}
    for checkpoint in (expected, {'state_dict': expected, 'meta': {}}, {
            'model': expected, 'epoch': 240
    }, {'state_dict': ddp}, {'model': ddp}, ddp):
        found = state_dict_of(checkpoint)
        assert found.keys() == expected.keys()
        assert all(found[k] is expected[k] for k in expected)


@pytest.mark.parametrize('checkpoint', [
    torch.ones(3), {}, {'epoch': 3, 'accuracy': 71.2},
    {'state_dict': {'w': torch.ones(1), 'step': 3}}
])
def test_no_state_dict_is_one_error(checkpoint):
    with pytest.raises(CheckpointMismatchError, match='x.pth'):
        state_dict_of(checkpoint, 'x.pth')


names = st.sets(
    st.text('abc.', min_size=1, max_size=4), min_size=0, max_size=14)


@settings(max_examples=60, deadline=None)
@given(model_keys=names, file_keys=names, reshaped=names)
def test_fit_report_counts_and_names_every_difference(model_keys, file_keys,
                                                      reshaped):
    model = {k: torch.zeros(2) for k in model_keys}
    loaded = {
        k: torch.zeros(3 if k in reshaped else 2)
        for k in file_keys
    }
    missing = model_keys - file_keys
    unexpected = file_keys - model_keys
    mis_shaped = model_keys & file_keys & reshaped
    if not (missing or unexpected or mis_shaped):
        check_fit(loaded, model, 'f.pth', 'the model')  # nothing raised
        return
    with pytest.raises(CheckpointMismatchError) as error:
        check_fit(loaded, model, 'f.pth', 'the model')
    message = str(error.value)
    assert message.startswith(
        f'f.pth does not fit the model ({len(missing)} missing, '
        f'{len(unexpected)} unexpected, {len(mis_shaped)} mis-shaped keys)')
    listed = re.findall(r'^  (\S+?)(?::|$)', message, re.M)
    # At most 10 a kind are listed; each listed key is one of its kind.
    for kind in (missing, unexpected, mis_shaped):
        shown = [k for k in listed if k in kind]
        assert len(shown) == min(len(kind), 10)
    assert ('more)' in message) == any(
        len(kind) > 10 for kind in (missing, unexpected, mis_shaped))


def test_student_and_teacher_come_out_of_a_distillation_checkpoint():
    student, teacher = weights(1), weights(2)
    state_dict = {STUDENT_PREFIX + k: v for k, v in student.items()}
    state_dict.update({TEACHER_PREFIX + k: v for k, v in teacher.items()})
    state_dict['distiller.x'] = torch.ones(1)
    for prefix, part in ((STUDENT_PREFIX, student), (TEACHER_PREFIX,
                                                     teacher)):
        extracted = sub_state_dict(state_dict, prefix)
        assert extracted.keys() == part.keys()
        assert all(extracted[k] is part[k] for k in part)
    with pytest.raises(CheckpointMismatchError,
                       match='not a distillation checkpoint'):
        sub_state_dict(student, STUDENT_PREFIX)
    # Given where a plain model's weights are expected, it is named.
    with pytest.raises(CheckpointMismatchError,
                       match='convert_kd_ckpt_to_student'):
        check_fit(state_dict, student, 'kd.pth', 'the teacher model')


def test_output_is_never_written_over_unasked(good_file, tmp_path):
    dst = tmp_path / 'out' / 'converted.pth'
    save_checkpoint_file({'state_dict': weights(1)}, str(dst), str(good_file))
    first = dst.read_bytes()
    with pytest.raises(FileExistsError, match='--force'):
        save_checkpoint_file({'state_dict': weights(2)}, str(dst),
                             str(good_file))
    assert dst.read_bytes() == first
    save_checkpoint_file({'state_dict': weights(2)},
                         str(dst),
                         str(good_file),
                         force=True)
    assert torch.equal(
        torch.load(dst)['state_dict']['head.fc.weight'],
        weights(2)['head.fc.weight'])
    assert sorted(p.name for p in dst.parent.iterdir()) == ['converted.pth']
    # The input itself, under any spelling, even with force.
    src_bytes = good_file.read_bytes()
    (tmp_path / 'link.pth').symlink_to(good_file)
    for same in (str(good_file), f'{good_file.parent}/./{good_file.name}',
                 str(tmp_path / 'link.pth')):
        with pytest.raises(FileExistsError, match='is the input'):
            save_checkpoint_file({}, same, str(good_file), force=True)
    assert good_file.read_bytes() == src_bytes


# -- a teacher without weights ------------------------------------------------


def distill(**kwargs) -> dict:
    model = dict(
        _scope_='mmrazor',
        type='StrictSingleTeacherDistill',
        architecture=lenet(),
        teacher=lenet(),
        distiller=dict(type='ConfigurableDistiller'))
    model.update(kwargs)
    return model


@pytest.fixture(scope='module')
def lenet_ckpt(tmp_path_factory):
    from mmpretrain.registry import MODELS as CLS_MODELS
    path = tmp_path_factory.mktemp('teacher') / 'lenet.pth'
    teacher = CLS_MODELS.build(lenet())
    torch.save({'state_dict': teacher.state_dict()}, path)
    return path, teacher.state_dict()


@pytest.mark.parametrize('unset', [None, '', '  '])
def test_teacher_without_weights_is_refused(unset):
    with pytest.raises(ValueError, match='teacher_ckpt') as error:
        RAZOR_MODELS.build(distill(teacher_ckpt=unset))
    assert 'allow_random_teacher' in str(error.value)


def test_unset_shell_variable_in_cfg_options_stops_train_py(
        lenet_ckpt, tmp_path, monkeypatch):
    # python tools/train.py CFG --cfg-options model.teacher_ckpt=$CKPT
    # with CKPT unset.
    quiet_runner_reports(monkeypatch)
    config = write_config(
        tmp_path / 'kd.py', dict(model=distill(teacher_ckpt=str(
            lenet_ckpt[0]))))
    train = load_tool('train.py')
    monkeypatch.setattr(sys, 'argv', [
        'train.py',
        str(config), '--work-dir',
        str(tmp_path), '--cfg-options', 'model.teacher_ckpt='
    ])
    with pytest.raises(ValueError, match="teacher_ckpt is unset or empty"):
        train.main()


def test_teacher_weights_from_a_checkpoint_or_init_cfg_or_opt_in(
        lenet_ckpt):
    path, saved = lenet_ckpt
    loaded = RAZOR_MODELS.build(distill(teacher_ckpt=str(path)))
    for key, value in loaded.teacher.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # A teacher that loads itself in Runner.init_weights().
    teacher = dict(
        lenet(), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    pretrained = RAZOR_MODELS.build(distill(teacher=teacher))
    pretrained.init_weights()
    for key, value in pretrained.teacher.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # A backbone-only init_cfg leaves the head random: refused.
    partial = dict(lenet())
    partial['backbone'] = dict(
        partial['backbone'],
        init_cfg=dict(
            type='Pretrained', checkpoint=str(path), prefix='backbone'))
    with pytest.raises(ValueError, match='teacher_ckpt'):
        RAZOR_MODELS.build(distill(teacher=partial))
    # The whole teacher from a part of a file must fit it too.
    prefixed = RAZOR_MODELS.build(
        distill(
            teacher=dict(
                lenet(),
                init_cfg=dict(
                    type='Pretrained', checkpoint=str(path),
                    prefix='backbone'))))
    with pytest.raises(CheckpointMismatchError, match='head.fc.weight'):
        prefixed.init_weights()
    # Two sources of teacher weights: which one wins is not guessed.
    with pytest.raises(ValueError, match='weights twice'):
        RAZOR_MODELS.build(distill(teacher=teacher, teacher_ckpt=str(path)))
    # The explicit opt-in.
    RAZOR_MODELS.build(distill(teacher_ckpt=None, allow_random_teacher=True))


def test_damaged_teacher_ckpt_is_named(lenet_ckpt, tmp_path):
    cut = tmp_path / 'teacher.pth'
    cut.write_bytes(lenet_ckpt[0].read_bytes()[:500])
    with pytest.raises(DamagedCheckpointError) as error:
        RAZOR_MODELS.build(distill(teacher_ckpt=str(cut)))
    assert_damaged(error, cut)


# -- resuming ------------------------------------------------------------------

ITERS_PER_EPOCH = 3  # 6 samples, batch 2
EPOCHS = 2


@MODELS.register_module(force=True)
class ToyRegressor(BaseModel):
    """y = w x, one weight, trained by SGD on a fixed data set."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        prediction = self.w * inputs
        if mode == 'loss':
            return dict(loss=((prediction - data_samples)**2).mean())
        return prediction


@DATASETS.register_module(force=True)
class ToyLine(torch.utils.data.Dataset):
    """Samples of y = 2 x."""

    def __init__(self) -> None:
        self.x = torch.arange(1.0, 1.0 + 2 * ITERS_PER_EPOCH) / 4

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index):
        return dict(inputs=self.x[index], data_samples=2 * self.x[index])


def toy_cfg(work_dir: Path, name: str, **overrides) -> Config:
    cfg = dict(
        default_scope='mmengine',
        experiment_name=name,
        model=dict(type='ToyRegressor'),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dict(type='ToyLine'),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=EPOCHS),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=1, max_keep_ckpts=-1),
            logger=dict(type='LoggerHook', interval=1)),
        log_level='WARNING',
        randomness=dict(seed=0))
    cfg.update(overrides)
    return Config(cfg)


def iteration_checkpoints() -> dict:
    return dict(
        checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
        logger=dict(type='LoggerHook', interval=1))


def test_iteration_checkpoints_in_an_epoch_loop_are_not_resumed(
        tmp_path, monkeypatch):
    quiet_runner_reports(monkeypatch)
    fresh = toy_cfg(tmp_path, 'fresh', default_hooks=iteration_checkpoints())
    check_checkpoint_schedule(fresh)  # a new run: a warning, no error
    build_runner(fresh).train()
    assert (tmp_path / 'iter_4.pth').exists()  # in the second epoch

    resumed = toy_cfg(
        tmp_path,
        'resumed',
        default_hooks=iteration_checkpoints(),
        resume=True,
        load_from=str(tmp_path / 'iter_4.pth'))
    with pytest.raises(ValueError) as error:
        build_runner(resumed)
    message = str(error.value)
    assert 'default_hooks.checkpoint' in message
    assert 'by_epoch=False' in message and 'epoch-based loop' in message
    # The same through a custom hook, and with an explicit loop type.
    custom = toy_cfg(
        tmp_path,
        'custom',
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=EPOCHS),
        custom_hooks=[
            dict(type='CheckpointHook', by_epoch=False, interval=2)
        ],
        resume=True)
    with pytest.raises(ValueError, match=r'custom_hooks\.0'):
        build_runner(custom)


def test_mmengine_resumes_an_iteration_checkpoint_at_the_epoch_start(
        tmp_path, monkeypatch):
    # Why the refusal above: mmengine itself restarts the epoch. Resumed
    # from iter_4 (one iteration into epoch 2), it trains all 3 iterations
    # of epoch 2 again and ends past max_iters (6). Should mmengine resume
    # exactly one day, this fails and the refusal can go.
    quiet_runner_reports(monkeypatch)
    Runner.from_cfg(
        toy_cfg(tmp_path, 'first',
                default_hooks=iteration_checkpoints())).train()
    runner = Runner.from_cfg(
        toy_cfg(
            tmp_path,
            'again',
            default_hooks=iteration_checkpoints(),
            resume=True,
            load_from=str(tmp_path / 'iter_4.pth')))
    runner.train()
    assert runner.iter == 4 + ITERS_PER_EPOCH > EPOCHS * ITERS_PER_EPOCH


def test_allowed_schedules_pass_the_check():
    for train_cfg, hooks in (
        (dict(by_epoch=True, max_epochs=2), None),  # epoch checkpoints
        (dict(by_epoch=False, max_iters=6), iteration_checkpoints()),
        (dict(type='IterBasedTrainLoop', max_iters=6),
         iteration_checkpoints()),
    ):
        cfg = toy_cfg(Path('.'), 'x', train_cfg=train_cfg, resume=True)
        if hooks:
            cfg.default_hooks = hooks
        check_checkpoint_schedule(cfg)


def _keywords(call: ast.Call) -> dict:
    """keyword -> its constant, or the name it is given as."""
    return {
        k.arg: getattr(k.value, 'value', getattr(k.value, 'id', k.value))
        for k in call.keywords if k.arg
    }


def test_no_config_saves_iteration_checkpoints():
    # Every training loop in configs/ is epoch-based, so no checkpoint hook
    # may save by iteration. Read from the files' syntax (loading all the
    # configs costs a minute on 2 cores).
    hooks, loops = [], []
    for path in sorted((REPO / 'configs').rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                keywords = _keywords(node)
                hook = keywords.get('checkpoint')
                if isinstance(hook, ast.Call):
                    hooks.append((path, _keywords(hook)))
                if keywords.get('type') == 'CheckpointHook':
                    hooks.append((path, keywords))
            if isinstance(node, ast.Assign) and any(
                    getattr(t, 'id', None) == 'train_cfg'
                    for t in node.targets):
                loops.append((path, _keywords(node.value)))
    assert hooks and loops
    for path, loop in loops:
        # (a config without by_epoch merges into a base that sets it)
        assert loop.get('by_epoch', True) is True and 'type' not in loop, path
    for path, hook in hooks:
        assert hook.get('by_epoch', True) is True, path


@pytest.fixture
def trained_toy(tmp_path, monkeypatch):
    """A finished 2-epoch toy run with both epoch checkpoints, and the
    bytes of the last one."""
    quiet_runner_reports(monkeypatch)
    build_runner(toy_cfg(tmp_path, 'toy')).train()
    last = tmp_path / f'epoch_{EPOCHS}.pth'
    assert (tmp_path / 'last_checkpoint').read_text().strip() == str(last)
    return tmp_path, last, last.read_bytes()


def test_resume_from_a_damaged_latest_checkpoint_says_what_to_resume_from(
        trained_toy, monkeypatch):
    work_dir, last, intact = trained_toy
    last.write_bytes(intact[:len(intact) // 2])
    config = write_config(work_dir / 'toy.py',
                          toy_cfg(work_dir, 'toy').to_dict())
    monkeypatch.setattr(
        sys, 'argv',
        ['train.py',
         str(config), '--work-dir',
         str(work_dir), '--resume'])
    with pytest.raises(DamagedCheckpointError) as error:
        load_tool('train.py').main()
    message = str(error.value)
    assert_damaged(error, last)
    assert f'latest checkpoint of {work_dir}' in message
    assert 'last_checkpoint' in message
    previous = work_dir / 'epoch_1.pth'
    assert f'--resume {previous}' in message

    # The advice works: resumed from epoch 1, the run ends where the
    # uninterrupted one ended.
    resumed = build_runner(
        toy_cfg(work_dir, 'resumed', resume=True, load_from=str(previous)))
    resumed.train()
    assert (resumed.epoch, resumed.iter) == (EPOCHS,
                                             EPOCHS * ITERS_PER_EPOCH)
    expected = torch.load(io.BytesIO(intact))['state_dict']['w']
    assert torch.equal(resumed.model.w.data, expected)
    assert expected.item() > 0.5  # it learned something of y = 2x


def test_damaged_checkpoint_without_an_earlier_one(trained_toy):
    work_dir, last, intact = trained_toy
    (work_dir / 'epoch_1.pth').unlink()
    last.write_bytes(b'\0' * 64)
    with pytest.raises(DamagedCheckpointError) as error:
        build_runner(toy_cfg(work_dir, 'again', resume=True))
    assert 'holds no earlier epoch_*/iter_* checkpoint' in str(error.value)
    assert '--resume PATH' in str(error.value)


def test_resume_from_weights_only_names_the_file(tmp_path, monkeypatch):
    # A student written by convert_kd_ckpt_to_student.py keeps the training
    # run's meta but holds no message_hub; a release holds weights only.
    quiet_runner_reports(monkeypatch)
    config = write_config(tmp_path / 'toy.py',
                          toy_cfg(tmp_path, 'toy').to_dict())
    for name, checkpoint, missing in (
        ('student.pth', {'state_dict': {'w': torch.ones(1)},
                         'meta': {'epoch': 2, 'iter': 6}}, 'message_hub'),
        ('release.pth', {'w': torch.ones(1)}, 'meta, message_hub'),
    ):
        path = tmp_path / name
        torch.save(checkpoint, path)
        monkeypatch.setattr(sys, 'argv', [
            'train.py', str(config), '--work-dir', str(tmp_path),
            '--resume', str(path)])
        with pytest.raises(CheckpointMismatchError) as error:
            load_tool('train.py').main()
        message = str(error.value)
        assert f'cannot resume from {path}' in message
        assert f'holds no training state to resume (no {missing})' in message
        assert f'load_from={path}' in message  # what to do instead
