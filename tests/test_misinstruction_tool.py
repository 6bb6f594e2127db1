"""tools/analysis_tools/misinstruction.py on a teacher whose predictions are
known: it outputs the same logits for every image (class 3 ahead by 2)."""
import json
import math

import pytest

import _fashion_mnist_utils as fm
from _support import load_tool

PREDICTED, LOGIT, TAU = 3, 2.0, 4.0
# 10 images of the predicted class, 30 of the others (the teacher is wrong
# on all of those): the mis-instruction rate is 30 / 40.
TRAIN_LABELS = [PREDICTED] * 10 + ([0, 1, 2, 4, 5, 6, 7, 8, 9] * 4)[:30]
TEST_LABELS = list(range(10))
# Where the drawn examples are not asserted: one is drawn faster than six.
ONE_EXAMPLE = ('--num-examples', '1')


def teacher_probs():
    """Softmax(logits / tau): p of the predicted class and of any other."""
    others = 1.0
    top = math.exp(LOGIT / TAU)
    total = top + 9 * others
    return top / total, others / total


def loca_scale(alpha, p_label, p_best_other):
    return alpha / (1.0 - p_label + p_best_other)


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis_tools/misinstruction.py')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('fashion_mnist')
    fm.write_fashion_mnist(root, TRAIN_LABELS, TEST_LABELS)
    checkpoint = root / 'constant_teacher.pth'
    fm.save_constant_teacher(checkpoint, PREDICTED, LOGIT)
    return root, checkpoint


def run(tool, setup, tmp_path, config, *extra, options=()):
    root, checkpoint = setup
    out = tmp_path / 'out'
    summary = tool.main([
        str(config),
        str(checkpoint), '--out-dir',
        str(out), *extra, '--cfg-options', *fm.data_options(root), *options
    ])
    with open(out / 'misinstruction.json') as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    return summary, out


def test_rate_per_class_and_scale_of_a_known_teacher(tool, setup, tmp_path):
    # A LoCa distillation config: tau, alpha and the mode come from its loss.
    config = fm.DISTILL / f'loca_{fm.PAIR}'
    summary, out = run(
        tool,
        setup,
        tmp_path,
        config,
        options=['model.distiller.distill_losses.loss_distill.alpha=0.8'])
    assert (summary['tau'], summary['alpha'],
            summary['calibrate']) == (TAU, 0.8, 'wrong')
    assert summary['num_samples'] == 40
    assert summary['misinstructed'] == 30
    assert summary['misinstruction_rate'] == pytest.approx(0.75)
    assert summary['teacher_top1'] == pytest.approx(0.25)
    rates = {c['label']: c['rate'] for c in summary['per_class']}
    assert rates[PREDICTED] == 0.0
    assert all(rates[c] == 1.0 for c in rates if c != PREDICTED)
    assert summary['per_class'][PREDICTED]['samples'] == 10
    assert summary['per_class'][PREDICTED]['name'] == 'Dress'

    p_top, p_other = teacher_probs()
    expected = loca_scale(0.8, p_other, p_top)
    scale = summary['scale']
    assert scale['num_calibrated'] == 30
    assert scale['mean'] == pytest.approx(expected, abs=1e-9)
    assert scale['min'] == pytest.approx(expected, abs=1e-9)
    assert scale['max'] == pytest.approx(expected, abs=1e-9)
    assert sum(scale['histogram']['counts']) == 30
    # The drawn examples are mis-instructed samples (labels != PREDICTED).
    assert len(summary['example_samples']) == 6
    for name in ('misinstruction.png', 'calibration_examples.png'):
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_margin_mode_calibrates_the_right_samples_too(tool, setup, tmp_path):
    config = fm.DISTILL / f'loca_{fm.PAIR}'
    summary, _ = run(tool, setup, tmp_path, config, '--calibrate', 'margin',
                     *ONE_EXAMPLE)
    # The mis-instruction rate does not depend on the mode...
    assert summary['misinstruction_rate'] == pytest.approx(0.75)
    # ...but at tau 4 the teacher's lead (p_top - p_other = 0.06) is below
    # 1 - alpha = 0.1, so 'margin' also changes the 10 right samples.
    p_top, p_other = teacher_probs()
    assert p_top - p_other < 0.1
    assert summary['calibrated_rate'] == 1.0
    right = loca_scale(0.9, p_top, p_other)
    wrong = loca_scale(0.9, p_other, p_top)
    assert summary['scale']['num_calibrated'] == 40
    assert summary['scale']['mean'] == pytest.approx(
        (10 * right + 30 * wrong) / 40, abs=1e-9)
    assert summary['scale']['max'] == pytest.approx(right, abs=1e-9)


def test_classifier_config_uses_default_loca_settings(tool, setup, tmp_path):
    # The teacher's own training config: no LoCa loss, so tau 4, alpha 0.9.
    config = fm.REPO / ('configs/vanilla/fashion_mnist/'
                        'convnet32x64_1xb128_fashion_mnist.py')
    summary, _ = run(tool, setup, tmp_path, config, '--passes', '2',
                     *ONE_EXAMPLE)
    assert (summary['tau'], summary['alpha'],
            summary['calibrate']) == (TAU, 0.9, 'wrong')
    assert summary['num_samples'] == 80
    assert summary['misinstruction_rate'] == pytest.approx(0.75)
    p_top, p_other = teacher_probs()
    assert summary['scale']['mean'] == pytest.approx(
        loca_scale(0.9, p_other, p_top), abs=1e-9)


def test_checkpoint_of_another_network_is_refused(tool, setup, tmp_path):
    root, _ = setup
    wrong_network = tmp_path / 'student.pth'
    import torch
    torch.save({'state_dict': {
        'head.fc.bias': torch.zeros(10)
    }}, wrong_network)
    with pytest.raises(RuntimeError, match='does not fit the teacher model'):
        tool.main([
            str(fm.DISTILL / f'loca_{fm.PAIR}'),
            str(wrong_network), '--out-dir',
            str(tmp_path), '--cfg-options', *fm.data_options(root)
        ])


def test_distillation_checkpoint_gives_its_teacher(tool, setup, tmp_path):
    # A checkpoint saved by a distillation run: the constant teacher under
    # teacher.*, some student under architecture.*; the tool reads the
    # teacher from it and measures what the teacher's own file gives.
    import torch
    root, teacher_ckpt = setup
    teacher = torch.load(teacher_ckpt)['state_dict']
    state_dict = {f'teacher.{k}': v for k, v in teacher.items()}
    state_dict.update({
        f'architecture.{k}': torch.zeros_like(v)
        for k, v in teacher.items()
    })
    distilled = tmp_path / 'epoch_3.pth'
    torch.save({'state_dict': state_dict, 'meta': {'epoch': 3}}, distilled)
    config = fm.DISTILL / f'loca_{fm.PAIR}'
    args = [*ONE_EXAMPLE, '--cfg-options', *fm.data_options(root)]
    direct = tool.main(
        [str(config), str(teacher_ckpt), '--out-dir',
         str(tmp_path / 'a'), *args])
    from_run = tool.main(
        [str(config), str(distilled), '--out-dir',
         str(tmp_path / 'b'), *args])
    assert from_run['misinstruction_rate'] == pytest.approx(0.75)
    for key in ('misinstruction_rate', 'teacher_top1', 'scale', 'per_class'):
        assert from_run[key] == direct[key], key
