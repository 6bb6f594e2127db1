"""Real mmengine Runners distilling through ``custom_imports``: the losses
train, log their values and calibration statistics, checkpoint and resume;
every weight loaded into the distillation model fits it."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

from _support import load_tool, logged_scalars
from loca_mm.utils.checkpoint import CheckpointMismatchError

NUM_CLASSES = 4


@pytest.fixture(scope='module')
def image_folder(tmp_path_factory):
    """32 coloured 16x16 PNGs in 4 class folders (mmpretrain CustomDataset)."""
    root = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    for label in range(NUM_CLASSES):
        folder = root / f'class_{label}'
        folder.mkdir()
        for i in range(8):
            pixels = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
            pixels[..., label % 3] += np.uint8(60 * (1 + label // 3))
            Image.fromarray(pixels).save(folder / f'{i}.png')
    return str(root)


def tiny_classifier(width):
    # _scope_: the classifier builds its children (and its default data
    # preprocessor) from mmpretrain's registries, not mmrazor's.
    return dict(
        _scope_='mmpretrain',
        type='ImageClassifier',
        backbone=dict(
            type='ResNet',
            depth=18,
            stem_channels=width,
            base_channels=width,
            num_stages=2,
            strides=(1, 2),
            dilations=(1, 1),
            out_indices=(1, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=NUM_CLASSES,
            in_channels=width * 2,
            loss=dict(type='CrossEntropyLoss', loss_weight=0.1)))


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    import loca_mm  # noqa: F401  (compat fixes + registration)
    from mmpretrain.registry import MODELS
    teacher = MODELS.build(tiny_classifier(16))
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, path)
    return path


def distill_cfg(work_dir, data_root, teacher_ckpt, loss, max_epochs,
                batch_augments=None, name='run'):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='PackInputs'),
    ]
    data_preprocessor = dict(
        type='mmpretrain.ClsDataPreprocessor',
        num_classes=NUM_CLASSES,
        mean=[127.5] * 3,
        std=[64.0] * 3)
    if batch_augments:
        data_preprocessor['batch_augments'] = batch_augments
    loader = dict(
        batch_size=8,
        num_workers=0,
        dataset=dict(
            _scope_='mmpretrain',
            type='CustomDataset',
            data_root=data_root,
            pipeline=pipeline),
        sampler=dict(type='DefaultSampler', shuffle=True))
    return Config(
        dict(
            custom_imports=dict(
                imports=['loca_mm'], allow_failed_imports=False),
            default_scope='mmrazor',
            experiment_name=name,
            work_dir=work_dir,
            model=dict(
                type='StrictSingleTeacherDistill',
                data_preprocessor=data_preprocessor,
                architecture=tiny_classifier(8),
                teacher=tiny_classifier(16),
                teacher_ckpt=teacher_ckpt,
                distiller=dict(
                    type='ConfigurableDistiller',
                    student_recorders=dict(
                        logits=dict(type='ModuleOutputs', source='head.fc'),
                        gt_labels=dict(
                            type='ModuleInputs',
                            source='head.loss_module')),
                    teacher_recorders=dict(
                        logits=dict(type='ModuleOutputs', source='head.fc')),
                    distill_losses=dict(loss_kd=loss),
                    loss_forward_mappings=dict(
                        loss_kd=dict(
                            preds_S=dict(from_student=True,
                                         recorder='logits'),
                            preds_T=dict(from_student=False,
                                         recorder='logits'),
                            gt_labels=dict(
                                recorder='gt_labels',
                                from_student=True,
                                data_idx=1))))),
            train_dataloader=loader,
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
            optim_wrapper=dict(
                optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
            default_hooks=dict(
                logger=dict(type='LoggerHook', interval=1),
                checkpoint=dict(type='CheckpointHook', interval=1)),
            custom_hooks=[dict(type='LoCaLossHook')],
            log_processor=dict(window_size=1),
            randomness=dict(seed=0),
        ))


LOSSES = {
    'loca': dict(type='LoCaLoss', tau=4.0, alpha=0.9, loss_weight=0.9),
    'dkdloca': dict(type='DKDLoCaLoss', tau=4.0, nckd_weight=2.0,
                    warmup_epochs=2),
}


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_distillation_trains_logs_checkpoints_and_resumes(
        name, image_folder, teacher_ckpt, tmp_path):
    work_dir = str(tmp_path)
    runner = Runner.from_cfg(
        distill_cfg(work_dir, image_folder, teacher_ckpt, LOSSES[name], 2,
                    name=f'{name}_first'))
    runner.train()
    # The teacher is the checkpoint, frozen: it did not move in training.
    saved = torch.load(teacher_ckpt)['state_dict']
    for key, value in runner.model.teacher.state_dict().items():
        torch.testing.assert_close(value, saved[key], msg=key)

    lines = [line for line in logged_scalars(work_dir)[-1]
             if 'distill.loss_kd' in line]
    assert len(lines) == 8  # 2 epochs x 4 iterations, logged every one
    values = [line['distill.loss_kd'] for line in lines]
    assert all(np.isfinite(values)) and max(values) > 0
    # Calibration statistics reach the log (a random teacher is wrong on
    # most samples, so LoCa changes some of them).
    ratios = [line['loca_ratio'] for line in lines]
    assert all(0.0 <= r <= 1.0 for r in ratios) and max(ratios) > 0
    assert all(0 < line['loca_scale'] < 0.9 for line in lines
               if 'loca_scale' in line)
    if name == 'dkdloca':  # warm-up: epoch 1 weighs the loss by 1/2
        assert np.mean(values[:4]) < np.mean(values[4:])

    for epoch in (1, 2):
        assert osp.exists(osp.join(work_dir, f'epoch_{epoch}.pth'))
    last = torch.load(osp.join(work_dir, 'epoch_2.pth'), weights_only=False)
    assert last['meta']['epoch'] == 2 and last['meta']['iter'] == 8

    # Resume from the last checkpoint and train one more epoch.
    cfg = distill_cfg(work_dir, image_folder, teacher_ckpt, LOSSES[name], 3,
                      name=f'{name}_resumed')
    cfg.resume = True
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == 12 and resumed.epoch == 3
    state = torch.load(osp.join(work_dir, 'epoch_3.pth'), weights_only=False)
    # Resumed weights start from epoch 2's, not from scratch: the
    # student's first conv moved only by one epoch of SGD.
    key = 'architecture.backbone.conv1.weight'
    start = last['state_dict'][key]
    moved = (state['state_dict'][key] - start).norm() / start.norm()
    assert 0 < moved < 0.5


def test_soft_labels_from_mixup_are_distilled(image_folder, teacher_ckpt,
                                              tmp_path):
    mixup = dict(augments=[dict(type='Mixup', alpha=1.0)])
    runner = Runner.from_cfg(
        distill_cfg(str(tmp_path), image_folder, teacher_ckpt,
                    LOSSES['loca'], 1, batch_augments=mixup, name='mixup'))
    runner.train()
    # The recorded labels were soft (N, C): Mixup ran, and the loss took
    # their argmax rather than failing.
    labels = runner.model.distiller.get_record(
        'gt_labels', from_student=True, data_idx=1)
    assert labels.shape == (8, NUM_CLASSES) and labels.is_floating_point()
    lines = [line for line in logged_scalars(tmp_path)[-1]
             if 'distill.loss_kd' in line]
    assert len(lines) == 4 and all(np.isfinite(l['distill.loss_kd'])
                                   for l in lines)


def test_mismatched_teacher_checkpoint_stops_the_run(image_folder,
                                                     tmp_path):
    # A RepDistiller-style release loads nothing into an mmpretrain model:
    # that must be an error naming the keys, not a warning.
    bad = str(tmp_path / 'release.pth')
    torch.save({'model': {'conv1.weight': torch.zeros(16, 3, 3, 3)},
                'epoch': 240}, bad)
    cfg = distill_cfg(str(tmp_path), image_folder, bad, LOSSES['loca'], 1,
                      name='bad_teacher')
    with pytest.raises(RuntimeError) as info:
        Runner.from_cfg(cfg)
    message = str(info.value)
    assert 'does not fit the teacher model' in message
    assert 'backbone.conv1.weight' in message  # a missing key, named
    assert 'repdistiller_to_mmpretrain' in message


def test_teacher_init_cfg_loads_strictly(image_folder, tmp_path):
    # README's alternative to teacher_ckpt: the teacher loads itself in
    # Runner.init_weights(). A file that does not fit stops the run, as
    # with teacher_ckpt, instead of leaving the teacher random. (A file
    # that fits loads: test_checkpoints.py.)
    bad = str(tmp_path / 'release.pth')
    torch.save({'model': {'conv1.weight': torch.zeros(16, 3, 3, 3)}}, bad)
    cfg = distill_cfg(str(tmp_path), image_folder, None, LOSSES['loca'], 1,
                      name='teacher_init_cfg')
    cfg.model.teacher.init_cfg = dict(type='Pretrained', checkpoint=bad)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointMismatchError) as info:
        runner.train()
    message = str(info.value)
    assert f'teacher checkpoint {bad} does not fit the teacher' in message
    assert 'backbone.conv1.weight' in message  # missing, named


@pytest.fixture
def student_file(teacher_ckpt, tmp_path):
    """A student checkpoint made by convert_kd_ckpt_to_student.py from a
    distillation checkpoint, and the student's weights in it."""
    from mmrazor.registry import MODELS
    cfg = distill_cfg(str(tmp_path), '', teacher_ckpt, LOSSES['loca'], 1)
    algorithm = MODELS.build(cfg.model)
    kd_file = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': algorithm.state_dict(),
                'meta': {'epoch': 1, 'iter': 4}}, kd_file)
    student = str(tmp_path / 'student.pth')
    load_tool('model_converters/convert_kd_ckpt_to_student.py').convert(
        kd_file, student)
    return student, algorithm.architecture.state_dict()


def test_load_from_a_student_checkpoint_loads_the_student(
        image_folder, teacher_ckpt, student_file, tmp_path):
    path, weights = student_file
    cfg = distill_cfg(str(tmp_path / 'work'), image_folder, teacher_ckpt,
                      LOSSES['loca'], 1, name='load_student')
    cfg.load_from = path
    cfg.optim_wrapper.optimizer.lr = 0.0  # the weights stay as loaded
    runner = Runner.from_cfg(cfg)
    runner.train()
    for key, value in runner.model.architecture.named_parameters():
        torch.testing.assert_close(value, weights[key], msg=key)
    saved = torch.load(teacher_ckpt)['state_dict']
    for key, value in runner.model.teacher.state_dict().items():
        torch.testing.assert_close(value, saved[key], msg=key)
    log, = (tmp_path / 'work').glob('*/*.log')
    assert 'loaded into the student' in log.read_text()


def test_load_from_that_does_not_fit_stops_the_run(image_folder,
                                                   teacher_ckpt, tmp_path):
    # The teacher's file (twice the student's width) as load_from: read as
    # a plain model's weights, it does not fit the student.
    cfg = distill_cfg(str(tmp_path), image_folder, teacher_ckpt,
                      LOSSES['loca'], 1, name='load_teacher_file')
    cfg.load_from = teacher_ckpt
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointMismatchError) as info:
        runner.train()
    message = str(info.value)
    assert 'does not fit the student' in message
    assert 'backbone.conv1.weight: checkpoint (16, 3, 7, 7)' in message
    # A distillation checkpoint missing a part does not fit either.
    partial = {
        key: value
        for key, value in runner.model.state_dict().items()
        if not key.startswith('teacher.')
    }
    with pytest.raises(CheckpointMismatchError) as info:
        runner.model.load_state_dict(partial, strict=False)
    message = str(info.value)
    assert 'does not fit the distillation model' in message
    assert '(62 missing, 0 unexpected' in message
    assert 'teacher.backbone.conv1.weight' in message
