"""The runtime keeps the last checkpoint and the one of the best student
top-1; the teacher's once-only score does not take part."""

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

import _fashion_mnist_utils as fm
from _support import dataloader_options, logged_scalars
from tools.analysis_tools.results import read_run

# 8 test images; a network that always predicts class c scores the share of
# label c: class 0 -> 50 %, 1 -> 25 %, 2 and 3 -> 12.5 %.
TEST_LABELS = [0, 0, 0, 0, 1, 1, 2, 3]
TEACHER_CLASS = 0  # the teacher scores 50 %, better than any student epoch
# The class the student predicts at the validation of epochs 1, 2, 3: its
# best epoch (25 %) is neither the first (where the teacher's 50 % is
# logged) nor the last.
STUDENT_CLASSES = [2, 1, 3]


class PredictClass(Hook):
    """Before each validation, make the student predict one class for every
    image: zero final features weights, a one-hot head bias."""

    def before_val_epoch(self, runner) -> None:
        head = runner.model.architecture.head.fc
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.bias[STUDENT_CLASSES[runner.epoch - 1]] = 5.0


def test_best_follows_student_top1_and_last_is_kept(tmp_path):
    root = fm.write_fashion_mnist(tmp_path / 'data', list(range(10)) * 2,
                                  TEST_LABELS)
    teacher = tmp_path / 'teacher.pth'
    fm.save_constant_teacher(teacher, TEACHER_CLASS, 5.0)
    cfg = Config.fromfile(str(fm.DISTILL / f'kd_{fm.PAIR}'))
    cfg.merge_from_dict({
        'model.teacher_ckpt': str(teacher),
        'train_dataloader.batch_size': 10,
        'train_dataloader.dataset.indices': None,
        'train_cfg.max_epochs': 3,
        'train_cfg.val_interval': 1,
        'param_scheduler.T_max': 3,
        'log_level': 'WARNING',
        **dataloader_options(root),
    })
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.register_hook(PredictClass())
    runner.train()

    work = tmp_path / 'work'
    lines, = logged_scalars(work)
    val = [line for line in lines if 'accuracy/top1' in line]
    student = [line['accuracy/top1'] for line in val]
    assert student == pytest.approx([12.5, 25.0, 12.5])
    # The logger repeats the teacher's only score at every validation.
    assert [line['teacher/accuracy/top1'] for line in val] == [50.0] * 3

    # Best: epoch 2, the student's 25 %; last: epoch 3; nothing else.
    assert sorted(p.name for p in work.glob('*.pth')) == [
        'best_accuracy_top1_epoch_2.pth', 'epoch_3.pth']
    best = torch.load(work / 'best_accuracy_top1_epoch_2.pth',
                      weights_only=False)
    assert best['meta']['epoch'] == 2
    bias = best['state_dict']['architecture.head.fc.bias']
    assert int(bias.argmax()) == STUDENT_CLASSES[1]
    assert best['message_hub']['runtime_info']['best_score'] == 25.0

    # The collector reads mmengine's real layout of this run the same way.
    run = read_run(str(work))
    assert (run.config, run.seed) == (f'kd_{fm.PAIR}'[:-3], 0)
    assert run.student_top1 == {1: 12.5, 2: 25.0, 3: 12.5}
    assert run.teacher_top1 == 50.0
    # It finished its schedule; the per-run keys are not its settings.
    assert (run.schedule, run.unfinished()) == (3, None)
    assert run.settings['train_cfg.max_epochs'] == '3'
    assert not any(k.startswith(('randomness.seed', 'work_dir'))
                   for k in run.settings)
