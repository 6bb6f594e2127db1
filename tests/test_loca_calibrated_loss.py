"""LoCa in front of any logit loss: the calibrated teacher logits against
``loca_calibrate``, and ``LoCaCalibratedLoss`` around mmrazor's losses
against ``LoCaLoss`` / ``DKDLoCaLoss`` and formulas written here (float64)."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings
from torch import nn

from loca_mm import functional as LF


def build(loss_type, **kwargs):
    cfg = Config(
        dict(
            custom_imports=dict(imports=['loca_mm'],
                                allow_failed_imports=False),
            loss=dict(_scope_='mmrazor', type=loss_type, **kwargs)))
    import_modules_from_strings(**cfg.custom_imports)
    from mmrazor.registry import MODELS
    return MODELS.build(cfg.loss)


def wrapped(inner, **kwargs):
    return build('LoCaCalibratedLoss', loss=inner, **kwargs)


def batch(n=12, c=10, seed=0, scale=3.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    zs = (torch.randn(n, c, generator=g, dtype=dtype) * scale)
    zt = torch.randn(n, c, generator=g, dtype=dtype) * scale
    return zs.requires_grad_(), zt, torch.randint(0, c, (n, ), generator=g)


def calibrated(zt, y, tau, alpha=0.9, calibrate='wrong'):
    """LoCa's q from the probability-domain rule, in float64."""
    probs = torch.softmax(zt.double() / tau, -1)
    return LF.loca_calibrate(probs, y, alpha, calibrate).probs


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 6),
    c=st.integers(2, 12),
    scale=st.floats(0.1, 20.0),
    tau=st.floats(0.5, 8.0),
    alpha=st.floats(0.05, 0.95),
    calibrate=st.sampled_from(LF.CALIBRATION_MODES),
    seed=st.integers(0, 2**16))
def test_softened_calibrated_logits_are_loca_q(n, c, scale, tau, alpha,
                                               calibrate, seed):
    g = torch.Generator().manual_seed(seed)
    zt = (torch.randn(n, c, generator=g, dtype=torch.float64) *
          scale).requires_grad_()
    y = torch.randint(0, c, (n, ), generator=g)
    result = LF.loca_calibrated_logits(zt, y, tau, alpha, calibrate)
    assert not result.logits.requires_grad
    assert torch.isfinite(result.logits).all()
    q = calibrated(zt.detach(), y, tau, alpha, calibrate)
    torch.testing.assert_close(
        torch.softmax(result.logits.double() / tau, -1),
        q,
        atol=2e-6,
        rtol=0)
    # tau * log q: the per-row constant is zero.
    torch.testing.assert_close(
        result.logits.double(), tau * q.log(), atol=1e-4 * tau, rtol=1e-5)


def test_calibrated_logits_leave_ignored_samples_and_keep_the_shape():
    zt = torch.randn(2, 3, 5) * 4
    y = torch.tensor([[0, -100, 2], [-100, 4, 1]])
    result = LF.loca_calibrated_logits(zt, y, 2.0, ignore_index=-100)
    assert result.logits.shape == zt.shape
    ignored = y == -100
    torch.testing.assert_close(
        torch.softmax(result.logits[ignored] / 2, -1),
        torch.softmax(zt[ignored] / 2, -1))
    assert not result.calibrated.view(2, 3)[ignored].any()
    assert result.valid.view(2, 3).eq(~ignored).all()


@pytest.mark.parametrize('calibrate,alpha', [('wrong', 0.9), ('margin', 0.7),
                                             ('none', 0.9)])
def test_around_kl_divergence_it_is_loca_loss(calibrate, alpha):
    zs, zt, y = batch(n=32, dtype=torch.float32)
    zs2 = zs.detach().clone().requires_grad_()
    loss = wrapped(
        dict(type='KLDivergence', tau=4.0, loss_weight=0.9),
        alpha=alpha,
        calibrate=calibrate)
    reference = build(
        'LoCaLoss', tau=4.0, alpha=alpha, calibrate=calibrate,
        loss_weight=0.9)
    value, expected = loss(zs, zt, y), reference(zs2, zt, y)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    value.backward()
    expected.backward()
    torch.testing.assert_close(zs.grad, zs2.grad, rtol=1e-4, atol=1e-7)


def pearson_rows(a, b):
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_around_dist_it_is_dist_on_q(tau):
    zs, zt, y = batch()
    loss = wrapped(
        dict(
            type='DISTLoss',
            inter_loss_weight=0.5,
            intra_loss_weight=2.0,
            tau=tau,
            loss_weight=1.5))
    s, q = torch.softmax(zs / tau, -1), calibrated(zt, y, tau)
    inter = 1 - pearson_rows(s, q).mean()
    intra = 1 - pearson_rows(s.T, q.T).mean()
    expected = 1.5 * tau**2 * (0.5 * inter + 2.0 * intra)
    torch.testing.assert_close(loss(zs, zt, y), expected, rtol=1e-5, atol=0)


def test_around_wsld_it_is_wsld_on_the_calibrated_logits_with_the_labels():
    tau = 2.0
    zs, zt, y = batch()
    loss = wrapped(
        dict(type='WSLD', tau=tau, loss_weight=2.5, num_classes=10))
    q = calibrated(zt, y, tau)
    ce = -(q * torch.log_softmax(zs / tau, -1)).sum(1)
    # WSLD weights each sample by the student's and the teacher's
    # cross-entropy at temperature 1: the teacher's logits there are
    # tau * log q, i.e. the distribution q ** tau renormalized.
    ce_student = -torch.log_softmax(zs.detach(), -1)[torch.arange(12), y]
    ce_teacher = -torch.log_softmax(tau * q.log(), -1)[torch.arange(12), y]
    weight = 1 - torch.exp(-(ce_student / (ce_teacher + 1e-7)).clamp_min(0))
    expected = 2.5 * tau**2 * (weight * ce).mean()
    torch.testing.assert_close(loss(zs, zt, y), expected, rtol=1e-5, atol=0)


def test_around_mmrazor_dkd_it_is_dkd_on_q_and_equals_dkd_loca_loss():
    tau = 4.0
    zs, zt, y = batch()
    loss = wrapped(dict(type='DKDLoss', tau=tau, alpha=1.0, beta=8.0))
    q = calibrated(zt, y, tau)
    s = torch.softmax(zs / tau, -1)
    target = F.one_hot(y, 10).bool()
    q_y, s_y = q[target], s[target]
    tckd = q_y * (q_y / s_y).log() + (1 - q_y) * ((1 - q_y) / (1 - s_y)).log()
    q_nt = q.masked_fill(target, 0) / (1 - q_y).unsqueeze(1)
    s_nt = s.masked_fill(target, 0) / (1 - s_y).unsqueeze(1)
    nckd = (q_nt * (q_nt / s_nt).log()).masked_fill(target, 0).sum(1)
    # The batch mean: on torch 2.13, F.kl_div's reduction='batchmean' wins
    # over the size_average=False that mmrazor's DKDLoss also passes.
    expected = tau**2 * (tckd + 8.0 * nckd).mean()
    value = loss(zs, zt, y)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=0)
    # And so it is loca_mm's DKD+LoCa.
    dkdloca = build('DKDLoCaLoss', tau=tau, tckd_weight=1.0, nckd_weight=8.0)
    torch.testing.assert_close(
        value, dkdloca(zs, zt, y).double(), rtol=1e-5, atol=0)


def test_one_temperature_for_calibration_and_inner_loss():
    # Given to the wrapper only: the inner loss softens with it too.
    loss = wrapped(dict(type='KLDivergence'), tau=3.0)
    assert loss.tau == 3.0 and loss.loss.tau == 3.0
    # Given to the inner loss only: the calibration uses it.
    assert wrapped(dict(type='DISTLoss', tau=2.0)).tau == 2.0
    with pytest.raises(ValueError, match=r'tau=4.0 .*tau=1.0'):
        wrapped(dict(type='KLDivergence', tau=1.0), tau=4.0)


@pytest.mark.parametrize('inner,kwargs,match', [
    (dict(type='NoSuchLoss'), {}, 'NoSuchLoss'),
    ('KLDivergence', {}, 'config dict'),
    (dict(type='LoCaLoss'), {}, 'LoCa twice'),
    (dict(type='KLDivergence', tau=4.0), dict(alpha=1.0), 'alpha'),
    (dict(type='KLDivergence', tau=4.0), dict(calibrate='all'), 'calibrate'),
])
def test_bad_configs_fail_at_construction(inner, kwargs, match):
    with pytest.raises(ValueError, match=match):
        wrapped(inner, **kwargs)


def test_an_uncalibrated_loca_loss_inside_is_plain_kd_on_q():
    zs, zt, y = batch(dtype=torch.float32)
    loss = wrapped(dict(type='LoCaLoss', calibrate='none', tau=4.0))
    reference = build('LoCaLoss', tau=4.0)
    torch.testing.assert_close(
        loss(zs, zt, y), reference(zs, zt, y), rtol=1e-5, atol=1e-6)


def test_data_samples_reach_an_inner_loss_that_takes_them():
    from mmrazor.registry import MODELS

    @MODELS.register_module(force=True)
    class _WeightedBySampleKD(nn.Module):
        tau = 2.0

        def forward(self, preds_S, preds_T, data_samples):
            weights = torch.tensor([s['weight'] for s in data_samples])
            kl = (torch.softmax(preds_T / 2, -1) *
                  (torch.log_softmax(preds_T / 2, -1) -
                   torch.log_softmax(preds_S / 2, -1))).sum(1)
            return (weights * kl).sum()

    zs, zt, y = batch(n=3)
    samples = [dict(weight=w) for w in (1.0, 0.0, 2.0)]
    loss = wrapped(dict(type='_WeightedBySampleKD'))
    q, s = calibrated(zt, y, 2.0), torch.log_softmax(zs / 2, -1)
    expected = ((torch.tensor([1.0, 0.0, 2.0]) *
                 (q * (q.log() - s)).sum(1)).sum())
    torch.testing.assert_close(
        loss(zs, zt, y, samples), expected, rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match='data_samples'):
        loss(zs, zt, y)


@pytest.mark.parametrize('inner', [
    dict(type='DKDLoss', tau=4.0, alpha=1.0, beta=8.0),
    dict(type='WSLD', tau=4.0, num_classes=10),
    dict(type='KLDivergence', tau=4.0),
])
def test_ignored_rows_are_left_out_of_an_inner_loss(inner):
    """Around a loss that takes labels, ignore_index once passed -100 to it
    (index out of bounds); the inner loss now sees the kept rows only."""
    zs, zt, y = batch()
    ignored = y.clone()
    ignored[[1, 4, 7]] = -100
    keep = ignored != -100
    loss = wrapped(inner, ignore_index=-100)
    expected = wrapped(inner)(zs[keep], zt[keep], y[keep])
    torch.testing.assert_close(loss(zs, zt, ignored), expected)
    loss.train()
    loss.attach_runner(train_loop_by_epoch=True)
    loss(zs, zt, ignored)
    assert loss.take_calibration_totals()[0].item() == keep.sum().item()


@pytest.mark.parametrize('inner', [
    dict(type='DKDLoss', tau=4.0, alpha=1.0, beta=8.0),
    dict(type='WSLD', tau=4.0, num_classes=10),
])
def test_soft_labels_reach_an_inner_loss_as_their_argmax(inner):
    """Mixup labels once reached DKDLoss's scatter as floats; LoCa and the
    inner loss now read the same class, the mix's dominant one."""
    zs, zt, y = batch()
    soft = 0.7 * F.one_hot(y, 10).double() + 0.03
    torch.testing.assert_close(
        wrapped(inner)(zs, zt, soft), wrapped(inner)(zs, zt, y))


def test_ignore_index_with_an_inner_loss_taking_data_samples_is_refused():
    from mmrazor.registry import MODELS

    @MODELS.register_module(force=True)
    class _SampleLoss(nn.Module):
        tau = 2.0

        def forward(self, preds_S, preds_T, data_samples):
            return preds_S.sum()

    with pytest.raises(ValueError, match='_SampleLoss takes data_samples'):
        wrapped(dict(type='_SampleLoss'), ignore_index=-100)
