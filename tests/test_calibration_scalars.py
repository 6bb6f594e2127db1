"""LoCa's calibration scalars reach mmengine's visualizer backends (the local
scalars.json and TensorBoard) and the text log with the values the teacher
implies: with LoCaLossHook each log entry for exactly the iterations since
the previous one, without it (published by the algorithm) for its last
iteration."""
import math
import warnings

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import _fashion_mnist_utils as fm
from _support import dataloader_options, logged_scalars

PREDICTED, LOGIT, ALPHA = 3, 2.0, 0.9
# Batches of 8 in order, each with 2 images of the teacher's class: LoCa
# calibrates 6 of 8 samples in every iteration.
TRAIN_LABELS = [PREDICTED, 0, 1, 2, PREDICTED, 4, 5, 6] * 4
# s of every calibrated sample: the teacher is the same for every image.
P_TOP = math.exp(LOGIT / 4.0) / (math.exp(LOGIT / 4.0) + 9)
P_OTHER = 1 / (math.exp(LOGIT / 4.0) + 9)
EXPECTED_SCALE = ALPHA / (1 - P_OTHER + P_TOP)


def loca_config(tmp_path, labels, log_interval, **options) -> Config:
    """The Fashion-MNIST LoCa config on ``labels`` (batches of 8 in order)
    with the constant teacher, one epoch, no validation."""
    root = fm.write_fashion_mnist(tmp_path / 'data', labels, [0, 1])
    teacher = tmp_path / 'teacher.pth'
    if not teacher.exists():
        fm.save_constant_teacher(teacher, PREDICTED, LOGIT)
    cfg = Config.fromfile(str(fm.DISTILL / f'loca_{fm.PAIR}'))
    cfg.merge_from_dict({
        **dataloader_options(root, batch_size=8),
        'model.teacher_ckpt': str(teacher),
        'train_dataloader.sampler.shuffle': False,
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': log_interval,
        **options
    })
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.work_dir = str(tmp_path / 'work')
    # mmengine names its logger and visualizer after the experiment, by
    # default the config name and the start time to the second: two runs
    # started within one second would share them, and the second would log
    # into the first one's directory.
    cfg.experiment_name = tmp_path.name
    return cfg


def test_loca_ratio_and_scale_reach_local_and_tensorboard(tmp_path):
    tensorboard = pytest.importorskip('tensorboard')  # noqa: F841
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator

    cfg = loca_config(
        tmp_path, TRAIN_LABELS, 1, **{
            'visualizer.vis_backends':
            [dict(type='LocalVisBackend'),
             dict(type='TensorboardVisBackend')]
        })
    runner = Runner.from_cfg(cfg)
    runner.train()

    logged, = logged_scalars(tmp_path / 'work')
    train = [entry for entry in logged if 'loca_ratio' in entry]
    assert [entry['step'] for entry in train] == [1, 2, 3, 4]
    for entry in train:
        assert entry['loca_ratio'] == pytest.approx(0.75, abs=1e-7)
        assert entry['loca_scale'] == pytest.approx(EXPECTED_SCALE, abs=1e-6)

    vis_data, = (tmp_path / 'work').glob('*/vis_data')
    events = EventAccumulator(str(vis_data))
    events.Reload()
    for tag, value in (('loca_ratio', 0.75), ('loca_scale', EXPECTED_SCALE)):
        points = events.Scalars(tag)
        assert [p.step for p in points] == [1, 2, 3, 4]
        assert all(p.value == pytest.approx(value, abs=1e-6) for p in points)


def test_each_log_entry_gives_its_window_exactly(tmp_path):
    """Logged every 2 iterations, over batches of 8, 8, 8 and 6: each entry
    is calibrated / valid over its two batches (6/14 for the last window, not
    the mean 0.5 of its batch ratios), in scalars.json and the text log."""
    labels = ([PREDICTED, 0, 1, 2, PREDICTED, 4, 5, 6] +  # 6 of 8 calibrated
              [PREDICTED, PREDICTED, PREDICTED, 0, PREDICTED, PREDICTED, 1,
               PREDICTED] +  # 2 of 8
              [PREDICTED] * 8 +  # none
              [0, 1, 2, 4, 5, 6])  # 6 of 6
    Runner.from_cfg(loca_config(tmp_path, labels, 2)).train()

    logged, = logged_scalars(tmp_path / 'work')
    train = [entry for entry in logged if 'loca_ratio' in entry]
    assert [entry['step'] for entry in train] == [2, 4]
    assert train[0]['loca_ratio'] == pytest.approx(8 / 16, abs=1e-7)
    assert train[1]['loca_ratio'] == pytest.approx(6 / 14, abs=1e-7)
    for entry in train:
        assert entry['loca_scale'] == pytest.approx(EXPECTED_SCALE, abs=1e-6)
    log_file, = (tmp_path / 'work').glob('*/*.log')
    text = log_file.read_text()
    assert 'loca_ratio: 0.5000' in text and 'loca_ratio: 0.4286' in text


def test_without_the_hook_the_algorithm_publishes_each_iteration(tmp_path):
    """A config without LoCaLossHook (custom_hooks=[]): the distillation
    algorithm publishes the statistics itself, each log entry those of its
    last iteration (6/8, then 6/6 here), without a warning."""
    labels = ([PREDICTED, 0, 1, 2, PREDICTED, 4, 5, 6] +  # 6 of 8 calibrated
              [PREDICTED] * 8 +  # none
              [PREDICTED, 0, 1, 2, PREDICTED, 4, 5, 6] +  # 6 of 8
              [0, 1, 2, 4, 5, 6])  # 6 of 6
    cfg = loca_config(tmp_path, labels, 2, custom_hooks=[])
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='.*LoCaLossHook')
        Runner.from_cfg(cfg).train()

    logged, = logged_scalars(tmp_path / 'work')
    train = [entry for entry in logged if 'loca_ratio' in entry]
    assert [entry['step'] for entry in train] == [2, 4]
    # Iteration 2 calibrated nothing: no mean s, and none repeated.
    assert train[0]['loca_ratio'] == 0.0 and 'loca_scale' not in train[0]
    assert train[1]['loca_ratio'] == pytest.approx(1.0, abs=1e-7)
    assert train[1]['loca_scale'] == pytest.approx(EXPECTED_SCALE, abs=1e-6)
