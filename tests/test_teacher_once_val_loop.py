"""TeacherOnceValLoop: the student at every validation, the teacher once."""
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from _cifar100_utils import (DISTILL_DIR, VANILLA_DIR, build_runner,
                             cifar_files_unchecked,  # noqa: F401
                             random_split, save_fresh_model,
                             short_run_options, write_cifar100)

# The pair with the cheapest teacher.
CONFIG = DISTILL_DIR / 'kd_logits_resnet56_resnet20_1xb64_cifar100.py'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory, cifar_files_unchecked):  # noqa: F811
    """4 training images, 3 test images (2 validation batches of 2)."""
    root = tmp_path_factory.mktemp('cifar100')
    write_cifar100(str(root), random_split(4, seed=2), random_split(3, seed=3))
    return str(root)


def count_predict_calls(model: torch.nn.Module) -> list:
    """Record the batch size of every ``mode='predict'`` call of ``model``."""
    calls = []

    def record(module, args, kwargs):
        if kwargs.get('mode') == 'predict':
            inputs = kwargs.get('inputs', args[0] if args else None)
            calls.append(len(inputs))

    model.register_forward_pre_hook(record, with_kwargs=True)
    return calls


class RecordMetrics(Hook):
    """Keep the metrics of every validation epoch."""

    def __init__(self, records: list) -> None:
        self.records = records

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.records.append(dict(metrics))


def test_teacher_is_evaluated_at_the_first_validation_only(
        data_root, tmp_path):
    teacher_ckpt = str(tmp_path / 'teacher.pth')
    save_fresh_model(Config.fromfile(str(CONFIG)).model.teacher, teacher_ckpt)
    options = short_run_options(
        data_root, str(tmp_path), batch_size=2, teacher_ckpt=teacher_ckpt)
    options['train_cfg.max_epochs'] = 2
    runner = build_runner(CONFIG, options)
    metrics_per_validation = []
    runner.register_hook(RecordMetrics(metrics_per_validation))
    teacher_calls = count_predict_calls(runner.model.teacher)
    student_calls = count_predict_calls(runner.model.architecture)

    runner.train()

    assert len(metrics_per_validation) == 2
    assert teacher_calls == [2, 1]  # the 3 test images, once
    assert student_calls == [2, 1] * 2  # the 3 test images, every epoch
    first, *later = metrics_per_validation
    assert set(first) == {'accuracy/top1', 'teacher/accuracy/top1'}
    assert all(set(m) == {'accuracy/top1'} for m in later)
    # Accuracy of 3 images: a multiple of 100 / 3.
    top1 = first['teacher/accuracy/top1']
    assert min(abs(top1 - k * 100 / 3) for k in range(4)) < 1e-4
    # The logger keeps the teacher's value for later validations.
    assert runner.message_hub.get_scalar(
        'val/teacher/accuracy/top1').current() == pytest.approx(top1)


def test_model_without_teacher_is_refused(data_root, tmp_path):
    options = short_run_options(data_root, str(tmp_path), batch_size=2)
    options['val_cfg'] = dict(type='TeacherOnceValLoop')
    runner = build_runner(VANILLA_DIR / 'resnet20_1xb64_cifar100.py',
                          options)
    with pytest.raises(TypeError, match='ImageClassifier has none'):
        runner.val()
