"""Logit Standardization (Sun et al., CVPR 2024) in the losses: the
``standardize`` flag against the paper's formula written out here (float64),
composed with LoCa, through the chunked and fused losses, the registered
modules, the Hugging Face arguments and the KD+LS / LoCa+LS / DKD+LS /
DKD+LoCa+LS configs."""
import math

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import loca_mm  # noqa: F401  (registers the losses)
from loca_mm import functional as LF
from loca_mm.models.losses import DKDLoCaLoss, LoCaCalibratedLoss, LoCaLoss
from mmrazor.registry import MODELS

import _fashion_mnist_utils as fm
from _cifar100_utils import DISTILL_DIR
from _reference_losses import dkd_reference, loca_kd_reference

NUM_CLASSES = 10


@pytest.fixture(autouse=True)
def mmrazor_scope():
    # LoCaCalibratedLoss builds its inner loss, and the configs name their
    # losses, in mmrazor's registry, the scope a distillation Runner sets;
    # another test of the same process may have left a different one.
    with DefaultScope.overwrite_default_scope('mmrazor'):
        yield


def zscore(logits):
    """The paper's code: (z - mean) / (1e-7 + std), std with n - 1."""
    z = np.asarray(logits, dtype=np.float64)
    return (z - z.mean(-1, keepdims=True)) / (
        1e-7 + z.std(-1, ddof=1, keepdims=True))


def softmax(z, tau):
    z = np.asarray(z, dtype=np.float64) / tau
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ls_kd(logits_s, logits_t, tau):
    """Logit Standardization's KD: tau^2 * batch mean of
    KL(softmax(std(z_T) / tau) || softmax(std(z_S) / tau))."""
    p_t = softmax(zscore(logits_t), tau)
    log_p_s = np.log(softmax(zscore(logits_s), tau))
    return tau**2 * np.mean(np.sum(p_t * (np.log(p_t) - log_p_s), -1))


def batch(seed=0, rows=8, scale_t=6.0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(rows, NUM_CLASSES, generator=generator,
                          dtype=torch.float64) * 3 + 1
    teacher = torch.randn(rows, NUM_CLASSES, generator=generator,
                          dtype=torch.float64) * scale_t - 2
    labels = torch.randint(0, NUM_CLASSES, (rows, ), generator=generator)
    return student, teacher, labels


@pytest.mark.parametrize('tau', [1.0, 2.0, 4.0])
def test_kd_with_standardize_is_logit_standardization_kd(tau):
    student, teacher, labels = batch()
    result = LF.loca_kd_loss(student, teacher, labels, tau,
                             calibrate='none', standardize=True)
    expected = ls_kd(student, teacher, tau)
    assert result.loss.item() == pytest.approx(expected, rel=1e-12)
    # Not plain KD: the teacher here is 2x as spread as the student.
    plain = LF.loca_kd_loss(student, teacher, labels, tau, calibrate='none')
    assert abs(plain.loss.item() - expected) > 0.1


def test_standardize_is_off_by_default_and_shift_and_scale_free():
    student, teacher, labels = batch()
    default = LF.loca_kd_loss(student, teacher, labels, 2.0)
    off = LF.loca_kd_loss(student, teacher, labels, 2.0, standardize=False)
    assert default.loss.item() == off.loss.item()
    # z-scores do not see a per-row shift or a positive scale.
    on = LF.loca_kd_loss(student, teacher, labels, 2.0, standardize=True)
    moved = LF.loca_kd_loss(5 * student - 3, 0.5 * teacher + 7, labels, 2.0,
                            standardize=True)
    assert moved.loss.item() == pytest.approx(on.loss.item(), rel=1e-9)


@pytest.mark.parametrize('calibrate', ['wrong', 'margin'])
def test_loca_with_standardize_calibrates_the_standardized_teacher(
        calibrate):
    student, teacher, labels = batch(seed=1)
    tau, alpha = 2.0, 0.9
    result = LF.loca_kd_loss(student, teacher, labels, tau, alpha, calibrate,
                             standardize=True)
    expected = loca_kd_reference(
        zscore(student), zscore(teacher), labels.numpy(), tau, alpha,
        calibrate)
    assert result.loss.item() == pytest.approx(expected, rel=1e-10)
    assert result.calibrated.any()
    assert result.loss.item() != pytest.approx(
        ls_kd(student, teacher, tau), rel=1e-3)


@pytest.mark.parametrize('calibrate', ['none', 'wrong'])
def test_dkd_with_standardize_is_dkd_on_standardized_logits(calibrate):
    student, teacher, labels = batch(seed=2)
    result = LF.dkd_loss(student, teacher, labels, 4.0, 0.9, calibrate,
                         tckd_weight=9.0, nckd_weight=81.0,
                         standardize=True)
    expected = dkd_reference(zscore(student), zscore(teacher),
                             labels.numpy(), 4.0, 9.0, 81.0, 0.9, calibrate)
    assert result.loss.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize('name', sorted(LF.DIVERGENCES))
def test_every_divergence_standardizes_its_inputs(name):
    student, teacher, labels = batch(seed=3)
    loss_fn = LF.DIVERGENCES[name]
    result = loss_fn(student, teacher, labels, 2.0, standardize=True)
    on_zscores = loss_fn(torch.from_numpy(zscore(student)),
                         torch.from_numpy(zscore(teacher)), labels, 2.0)
    assert result.loss.item() == pytest.approx(on_zscores.loss.item(),
                                               rel=1e-10)
    assert result.loss.item() != pytest.approx(
        loss_fn(student, teacher, labels, 2.0).loss.item(), rel=1e-3)


def test_masked_columns_stay_masked_and_out_of_the_statistics():
    # A -inf column (a masked class) is left out of mean and std: loss and
    # student gradient equal those of the rows without it, all finite.
    student, teacher, labels = batch(seed=4)
    labels = labels.masked_fill(labels == 3, 0)
    keep = [c for c in range(NUM_CLASSES) if c != 3]
    masked_s = student.clone().index_fill_(1, torch.tensor([3]),
                                           -math.inf).requires_grad_()
    masked_t = teacher.clone().index_fill_(1, torch.tensor([3]), -math.inf)
    narrow_s = student[:, keep].clone().requires_grad_()
    narrow_labels = labels - (labels > 3).long()
    for loss_fn in (LF.loca_kd_loss, LF.dkd_loss):
        masked = loss_fn(masked_s, masked_t, labels, 2.0, standardize=True)
        narrow = loss_fn(narrow_s, teacher[:, keep], narrow_labels, 2.0,
                         standardize=True)
        assert masked.loss.item() == pytest.approx(narrow.loss.item(),
                                                   rel=1e-10)
        grad_masked, = torch.autograd.grad(masked.loss, masked_s)
        grad_narrow, = torch.autograd.grad(narrow.loss, narrow_s)
        assert torch.isfinite(grad_masked).all()
        assert (grad_masked[:, 3] == 0).all()
        torch.testing.assert_close(grad_masked[:, keep], grad_narrow)


def test_nan_logits_show_in_the_loss():
    student, teacher, labels = batch()
    student[2, 5] = math.nan
    result = LF.loca_kd_loss(student, teacher, labels, standardize=True)
    assert math.isnan(result.loss.item())


def test_student_gradient_matches_autograd_of_the_formula():
    student, teacher, labels = batch(seed=5)
    student.requires_grad_()
    result = LF.loca_kd_loss(student, teacher, labels, 2.0,
                             calibrate='none', standardize=True)
    grad, = torch.autograd.grad(result.loss, student)

    def formula(z_s):
        def norm(z):
            return (z - z.mean(-1, keepdim=True)) / (
                1e-7 + z.std(-1, keepdim=True))
        p_t = torch.softmax(norm(teacher) / 2.0, -1)
        log_p_s = torch.log_softmax(norm(z_s) / 2.0, -1)
        return 4.0 * (p_t * (p_t.log() - log_p_s)).sum(-1).mean()

    expected, = torch.autograd.grad(formula(student), student)
    torch.testing.assert_close(grad, expected)


def test_chunked_and_fused_losses_accept_standardize():
    # A row-wise transform: chunks of rows give the whole loss.
    student, teacher, labels = batch(seed=6, rows=12)
    student.requires_grad_()
    whole = LF.loca_kd_loss(student, teacher, labels, 2.0, standardize=True)
    chunked = LF.chunked_distill_loss(LF.loca_kd_loss, student, teacher,
                                      labels, chunk_size=5, tau=2.0,
                                      standardize=True)
    torch.testing.assert_close(chunked.loss, whole.loss)
    grads = [torch.autograd.grad(r.loss, student)[0] for r in (whole,
                                                                chunked)]
    torch.testing.assert_close(grads[1], grads[0])

    generator = torch.Generator().manual_seed(7)
    hidden_s = torch.randn(12, 6, generator=generator, dtype=torch.float64)
    weight_s = torch.randn(NUM_CLASSES, 6, generator=generator,
                           dtype=torch.float64, requires_grad=True)
    hidden_t = torch.randn(12, 8, generator=generator, dtype=torch.float64)
    weight_t = torch.randn(NUM_CLASSES, 8, generator=generator,
                           dtype=torch.float64)
    fused = LF.fused_linear_distill_loss(
        hidden_s, weight_s, hidden_t, weight_t, labels, LF.dkd_loss,
        chunk_size=5, block_size=2, tau=4.0, standardize=True)
    plain = LF.dkd_loss(hidden_s @ weight_s.T, hidden_t @ weight_t.T, labels,
                        4.0, standardize=True)
    torch.testing.assert_close(fused.loss, plain.loss)
    torch.testing.assert_close(
        torch.autograd.grad(fused.loss, weight_s)[0],
        torch.autograd.grad(plain.loss, weight_s)[0])


@pytest.mark.parametrize('bad', [1, 0, 'True', None, np.bool_(True)])
def test_standardize_must_be_a_bool(bad):
    student, teacher, labels = batch()
    with pytest.raises(TypeError, match='standardize'):
        LF.loca_kd_loss(student, teacher, labels, standardize=bad)
    with pytest.raises(TypeError, match='standardize'):
        LF.loca_log_probs(teacher, labels, standardize=bad)
    for loss_class, kwargs in ((LoCaLoss, {}), (DKDLoCaLoss, {}),
                               (LoCaCalibratedLoss,
                                dict(loss=dict(type='KLDivergence',
                                               tau=2.0)))):
        with pytest.raises(TypeError,
                           match=f'{loss_class.__name__}: standardize='):
            loss_class(standardize=bad, **kwargs)


def test_registered_losses_pass_standardize_on():
    student, teacher, labels = batch(seed=8)
    kd = LoCaLoss(tau=2.0, loss_weight=9.0, calibrate='none',
                  standardize=True, log_stats=False)
    assert kd(student, teacher, labels).item() == pytest.approx(
        9.0 * ls_kd(student, teacher, 2.0), rel=1e-10)
    loca = LoCaLoss(tau=2.0, standardize=True, log_stats=False)
    assert loca(student, teacher, labels).item() == pytest.approx(
        loca_kd_reference(zscore(student), zscore(teacher), labels.numpy(),
                          2.0, 0.9, 'wrong'), rel=1e-10)
    dkd = DKDLoCaLoss(tau=4.0, tckd_weight=9.0, nckd_weight=81.0,
                      standardize=True, log_stats=False)
    assert dkd(student, teacher, labels).item() == pytest.approx(
        dkd_reference(zscore(student), zscore(teacher), labels.numpy(), 4.0,
                      9.0, 81.0, 0.9, 'wrong'), rel=1e-10)
    assert 'standardize=True' in repr(loca) and 'standardize=True' in repr(
        dkd)


def test_wrapper_standardizes_student_and_calibrated_teacher():
    # mmrazor's KLDivergence on the wrapper's inputs is LoCaLoss: the
    # standardized student and the LoCa teacher of the standardized logits.
    student, teacher, labels = batch(seed=9)
    wrapped = LoCaCalibratedLoss(
        loss=dict(type='KLDivergence', tau=2.0, reduction='batchmean'),
        standardize=True, log_stats=False)
    direct = LoCaLoss(tau=2.0, standardize=True, log_stats=False)
    assert wrapped(student, teacher, labels).item() == pytest.approx(
        direct(student, teacher, labels).item(), rel=1e-9)
    with pytest.raises(ValueError, match='set standardize on '
                       'LoCaCalibratedLoss'):
        LoCaCalibratedLoss(
            loss=dict(type='LoCaLoss', calibrate='none', standardize=True))


def test_hugging_face_arguments_pass_standardize_on(tmp_path):
    from loca_mm.integrations.transformers import LoCaDistillArguments
    student, teacher, labels = batch(seed=10)
    for distill_loss, reference in (('kd', LF.loca_kd_loss),
                                    ('dkd', LF.dkd_loss)):
        args = LoCaDistillArguments(
            output_dir=str(tmp_path), distill_loss=distill_loss,
            standardize=True, tau=2.0, report_to='none')
        result = args.distill_function()(student, teacher, labels)
        expected = reference(student, teacher, labels, 2.0, standardize=True)
        assert result.loss.item() == expected.loss.item()
    assert LoCaDistillArguments(output_dir=str(tmp_path),
                                report_to='none').standardize is False


# The new configs and what the LS repository's settings make of them.
CIFAR = 'logits_resnet32x4_resnet8x4_1xb64_cifar100.py'
LS_CONFIGS = {
    'cifar100-kdls': (DISTILL_DIR / f'kdls_{CIFAR}', 1.0,
                      dict(type='LoCaLoss', tau=2.0, loss_weight=9.0,
                           calibrate='none')),
    'cifar100-locals': (DISTILL_DIR / f'locals_{CIFAR}', 1.0,
                        dict(type='LoCaLoss', tau=2.0, loss_weight=9.0,
                             calibrate='wrong', alpha=0.9)),
    'cifar100-dkdls': (DISTILL_DIR / f'dkdls_{CIFAR}', 1.0,
                       dict(type='DKDLoCaLoss', tau=4.0, tckd_weight=9.0,
                            nckd_weight=81.0, warmup_epochs=20,
                            calibrate='none')),
    'cifar100-dkdlocals': (DISTILL_DIR / f'dkdlocals_{CIFAR}', 1.0,
                           dict(type='DKDLoCaLoss', tau=4.0, tckd_weight=9.0,
                                nckd_weight=81.0, warmup_epochs=20,
                                calibrate='wrong', alpha=0.9)),
    'fashion_mnist-kdls': (fm.DISTILL / f'kdls_{fm.PAIR}', 1.0,
                           dict(type='LoCaLoss', tau=2.0, loss_weight=9.0,
                                calibrate='none')),
    'fashion_mnist-locals': (fm.DISTILL / f'locals_{fm.PAIR}', 1.0,
                             dict(type='LoCaLoss', tau=2.0, loss_weight=9.0,
                                  calibrate='wrong', alpha=0.9)),
    'fashion_mnist-dkdls': (fm.DISTILL / f'dkdls_{fm.PAIR}', 1.0,
                            dict(type='DKDLoCaLoss', tau=4.0,
                                 tckd_weight=9.0, nckd_weight=18.0,
                                 warmup_epochs=2, calibrate='none')),
    'fashion_mnist-dkdlocals': (fm.DISTILL / f'dkdlocals_{fm.PAIR}', 1.0,
                                dict(type='DKDLoCaLoss', tau=4.0,
                                     tckd_weight=9.0, nckd_weight=18.0,
                                     warmup_epochs=2, calibrate='wrong',
                                     alpha=0.9)),
}


@pytest.mark.parametrize('key', list(LS_CONFIGS))
def test_config_builds_a_standardizing_loss(key):
    path, ce_weight, settings = LS_CONFIGS[key]
    cfg = Config.fromfile(str(path))
    losses = cfg.model.distiller.distill_losses
    assert losses.loss_ce.loss_weight == ce_weight
    distill = losses.loss_distill.to_dict()
    assert distill.pop('standardize') is True
    assert distill == settings
    loss = MODELS.build(cfg.model.distiller.distill_losses.loss_distill)
    assert loss.standardize is True
    loss.log_stats = False
    student, teacher, labels = batch(seed=11)
    calibrate, alpha = settings['calibrate'], settings.get('alpha', 0.9)
    if settings['type'] == 'LoCaLoss':
        expected = settings['loss_weight'] * loca_kd_reference(
            zscore(student), zscore(teacher), labels.numpy(),
            settings['tau'], alpha, calibrate)
    else:
        # Past the warm-up: the term at full weight.
        loss.attach_runner(train_loop_by_epoch=True)
        loss.set_training_progress(epoch=10**6, iteration=10**6)
        expected = dkd_reference(zscore(student), zscore(teacher),
                                 labels.numpy(), settings['tau'],
                                 settings['tckd_weight'],
                                 settings['nckd_weight'], alpha, calibrate)
    assert loss(student, teacher, labels).item() == pytest.approx(
        expected, rel=1e-9)


LS_COLLECTIONS = {'kdls': 'KD+LS', 'locals': 'LoCa+LS', 'dkdls': 'DKD+LS',
                  'dkdlocals': 'DKD+LoCa+LS'}


def test_metafile_and_readme_describe_the_cifar100_configs():
    from tools.analysis_tools.metafile import load_models
    entries = {
        e['Name']: e
        for e in load_models(str(DISTILL_DIR / 'metafile.yml'))
    }
    readme = (DISTILL_DIR / 'README.md').read_text()
    for method, collection in LS_COLLECTIONS.items():
        path = DISTILL_DIR / f'{method}_{CIFAR}'
        entry = entries[path.stem]
        assert entry['In Collection'] == collection
        facts = entry['Metadata']
        cfg = Config.fromfile(str(path))
        assert facts['Learning Rate'] == cfg.optim_wrapper.optimizer.lr
        assert facts['Teacher Checkpoint'] == cfg.model.teacher_ckpt
        assert facts.get('NCKD Weight') == \
            cfg.model.distiller.distill_losses.loss_distill.get('nckd_weight')
        published = facts['Published Top 1 Accuracy'].get('Distilled')
        row, = [line for line in readme.splitlines()
                if line.startswith(f'| {collection} |')]
        assert f'[{method}](./{path.name})' in row
        assert row.endswith('| not trained yet |')
        assert 'Results' not in entry
        if published is None:
            assert '| none |' in row
        else:
            assert f'| {published:.2f} (' in row


@pytest.mark.parametrize('method', list(LS_COLLECTIONS))
def test_fashion_mnist_config_trains_two_iterations(method, tmp_path):
    from _support import logged_scalars

    # Standardizing keeps the teacher's argmax, so LoCa+LS calibrates
    # exactly the images the constant teacher gets wrong.
    runner = fm.train_two_iterations(fm.DISTILL / f'{method}_{fm.PAIR}',
                                     tmp_path)
    assert runner.iter == 2
    assert runner.model.distiller.distill_losses.loss_distill.standardize
    hub = runner.message_hub
    assert math.isfinite(
        hub.log_scalars['train/distill.loss_distill'].current())
    if 'loca' in method:
        lines, = logged_scalars(tmp_path / 'work')
        ratios = [line['loca_ratio'] for line in lines if 'loca_ratio' in line]
        assert ratios == [29 / 32, 28 / 32]
    else:
        assert 'train/loca_ratio' not in hub.log_scalars
