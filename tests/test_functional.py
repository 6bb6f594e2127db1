"""The framework-free core: calibration guarantees and losses vs float64."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _reference_losses import (calibrate_row, dkd_reference,
                               loca_kd_reference, softmax64)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from loca_mm import functional as LF

ALPHAS = st.floats(0.05, 0.99)


@st.composite
def teacher_batches(draw):
    """Logit batches from flat to peaked, with labels."""
    rows = draw(st.integers(1, 8))
    classes = draw(st.integers(2, 12))
    spread = draw(st.sampled_from([0.1, 1.0, 5.0, 20.0]))
    logits = draw(
        arrays(np.float64, (rows, classes),
               elements=st.floats(-1, 1))) * spread
    labels = draw(
        arrays(np.int64, (rows, ), elements=st.integers(0, classes - 1)))
    return torch.from_numpy(logits), torch.from_numpy(labels)


def calibrate64(batch, alpha, mode):
    logits, labels = batch
    probs = torch.softmax(logits, -1)  # float64
    return probs, labels, LF.loca_calibrate(probs, labels, alpha, mode)


def non_target_max(q, labels):
    return q.scatter(-1, labels[:, None], -1.0).amax(-1)


@settings(max_examples=150, deadline=None)
@given(batch=teacher_batches(), alpha=ALPHAS,
       mode=st.sampled_from(['wrong', 'margin']))
def test_calibrated_distribution_guarantees(batch, alpha, mode):
    probs, labels, out = calibrate64(batch, alpha, mode)
    q, cal = out.probs, out.calibrated
    rows = torch.arange(len(labels))
    q_y, q_k = q[rows, labels], non_target_max(q, labels)
    # A distribution: non-negative, sums to one.
    assert (q >= 0).all()
    torch.testing.assert_close(q.sum(-1), torch.ones(len(q), dtype=q.dtype))
    # The label leads the best non-target class by exactly 1 - alpha on
    # every calibrated sample.
    torch.testing.assert_close(q_y[cal] - q_k[cal],
                               torch.full_like(q_y[cal], 1 - alpha))
    if mode == 'margin':
        assert (q_y - q_k >= (1 - alpha) - 1e-12).all()
    else:
        # After 'wrong', the label is the strict top-1 of every sample ...
        assert (q_y > q_k).all()
        # ... and exactly the samples where it was not were changed.
        p_y, p_k = probs[rows, labels], non_target_max(probs, labels)
        assert torch.equal(cal, p_k >= p_y)
        assert (out.scale[cal] < 1).all()
    # Dark knowledge kept: non-target ratios are those of p, via one factor.
    mask = torch.ones_like(q, dtype=torch.bool)
    mask[rows, labels] = False
    torch.testing.assert_close(q[mask].view(len(q), -1),
                               (out.scale[:, None] * probs)[mask].view(
                                   len(q), -1))
    # Untouched samples are bit-identical to p, with s == 1 exactly.
    assert torch.equal(q[~cal], probs[~cal])
    assert (out.scale[~cal] == 1.0).all()


@settings(max_examples=100, deadline=None)
@given(batch=teacher_batches(), alpha=ALPHAS,
       mode=st.sampled_from(['wrong', 'margin', 'none']))
def test_calibration_matches_rowwise_definition(batch, alpha, mode):
    probs, labels, out = calibrate64(batch, alpha, mode)
    for i, (p, y) in enumerate(zip(probs.numpy(), labels.numpy())):
        q, s, changed = calibrate_row(p, int(y), alpha, mode)
        np.testing.assert_allclose(out.probs[i].numpy(), q, rtol=1e-12,
                                   atol=1e-15)
        assert out.scale[i].item() == pytest.approx(s, rel=1e-12)
        assert bool(out.calibrated[i]) == changed


def test_none_mode_is_identity():
    probs = torch.softmax(torch.randn(16, 7, dtype=torch.float64), -1)
    labels = torch.randint(0, 7, (16, ))
    out = LF.loca_calibrate(probs, labels, 0.9, 'none')
    assert torch.equal(out.probs, probs) and not out.calibrated.any()


CASES = [
    # (tau, alpha, classes, mode)
    (1.0, 0.9, 10, 'wrong'),
    (4.0, 0.9, 100, 'wrong'),
    (4.0, 0.5, 100, 'margin'),
    (2.0, 0.95, 5, 'margin'),
    (4.0, 0.9, 100, 'none'),
    (0.5, 0.7, 3, 'wrong'),
]


def _logits(shape, seed, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


@pytest.mark.parametrize('tau,alpha,classes,mode', CASES)
def test_loca_kd_loss_equals_float64_formula(tau, alpha, classes, mode):
    zs, zt = _logits((64, classes), 0), _logits((64, classes), 1)
    labels = torch.randint(0, classes, (64, ),
                           generator=torch.Generator().manual_seed(2))
    out = LF.loca_kd_loss(zs, zt, labels, tau, alpha, mode)
    ref = loca_kd_reference(zs, zt, labels, tau, alpha, mode)
    assert out.loss.item() == pytest.approx(ref, rel=2e-5, abs=1e-6)
    if mode != 'none':  # the settings must actually exercise LoCa
        assert out.calibrated.any()


@pytest.mark.parametrize('tau,alpha,classes,mode', CASES)
@pytest.mark.parametrize('beta', [8.0, 2.0])
def test_dkd_loss_equals_float64_formula(tau, alpha, classes, mode, beta):
    zs, zt = _logits((64, classes), 3), _logits((64, classes), 4)
    labels = torch.randint(0, classes, (64, ),
                           generator=torch.Generator().manual_seed(5))
    out = LF.dkd_loss(zs, zt, labels, tau, alpha, mode, nckd_weight=beta)
    ref = dkd_reference(zs, zt, labels, tau, 1.0, beta, alpha, mode)
    assert out.loss.item() == pytest.approx(ref, rel=2e-5, abs=1e-6)


@pytest.mark.parametrize('loss_fn', ['kd', 'dkd'])
def test_token_level_input_with_ignore_index(loss_fn):
    # (batch, tokens, vocab) as in language modelling; -100 marks prompt and
    # padding positions, which must not enter the mean.
    zs, zt = _logits((3, 7, 11), 6), _logits((3, 7, 11), 7)
    labels = torch.randint(0, 11, (3, 7),
                           generator=torch.Generator().manual_seed(8))
    labels[0, :4] = -100
    labels[2, 5:] = -100
    if loss_fn == 'kd':
        out = LF.loca_kd_loss(zs, zt, labels, 2.0, 0.9, 'wrong',
                              ignore_index=-100)
        ref = loca_kd_reference(zs, zt, labels, 2.0, 0.9, 'wrong', -100)
    else:
        out = LF.dkd_loss(zs, zt, labels, 2.0, 0.9, 'wrong',
                          ignore_index=-100)
        ref = dkd_reference(zs, zt, labels, 2.0, 1.0, 8.0, 0.9, 'wrong',
                            -100)
    assert out.loss.item() == pytest.approx(ref, rel=2e-5)
    assert int(out.valid.sum()) == 21 - 6
    assert not out.calibrated[~out.valid].any()


def test_plain_kd_mode_equals_hinton_kd():
    zs, zt = _logits((32, 20), 9), _logits((32, 20), 10)
    labels = torch.randint(0, 20, (32, ))
    tau = 4.0
    ref = F.kl_div(F.log_softmax(zs / tau, -1), F.softmax(zt / tau, -1),
                   reduction='batchmean') * tau**2
    out = LF.loca_kd_loss(zs, zt, labels, tau, 0.9, 'none').loss
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


@st.composite
def distillation_batches(draw):
    """Student and teacher logits on a grid (so that ties between classes
    are exact in float32 and float64 alike), labels, some of them ignored."""
    rows = draw(st.integers(1, 10))
    classes = draw(st.integers(2, 16))
    step = draw(st.sampled_from([0.25, 1.0, 4.0]))
    grid = arrays(np.int64, (rows, classes), elements=st.integers(-24, 24))
    zs, zt = draw(grid) * step, draw(grid) * step
    labels = draw(
        arrays(np.int64, (rows, ), elements=st.integers(0, classes - 1)))
    ignored = draw(arrays(np.bool_, (rows, ))) & draw(st.booleans())
    labels[ignored] = -100
    return (torch.from_numpy(zs), torch.from_numpy(zt),
            torch.from_numpy(labels))


def reference_loss64(kind, zs64, zt64, labels, tau, alpha, beta, mode):
    """The loss in float64 autograd, with q materialised by loca_calibrate
    (itself checked against the row-wise definition above) and every
    distribution normalised in the log domain, so that saturated rows do not
    cancel to 0 / 0."""
    keep = labels != -100
    target = labels.clamp_min(0)
    q = LF.loca_calibrate(torch.softmax(zt64 / tau, -1), target, alpha,
                          mode).probs
    log_q, log_s = q.log(), F.log_softmax(zs64 / tau, -1)
    if kind == 'kd':
        per_sample = (q * (log_q - log_s)).sum(-1)
    else:
        label = F.one_hot(target, zs64.shape[-1]).bool()

        def split(log_dist):
            log_nt = log_dist.masked_fill(label, float('-inf'))
            log_mass = log_nt.logsumexp(-1, keepdim=True)
            binary = torch.cat((log_dist[label][:, None], log_mass), -1)
            return binary, (log_nt - log_mass).masked_fill(label, 0.0)

        (bq, nq), (bs, ns) = split(log_q), split(log_s)
        tckd = (bq.exp() * (bq - bs)).sum(-1)
        nckd = (nq.exp().masked_fill(label, 0.0) * (nq - ns)).sum(-1)
        per_sample = tckd + beta * nckd  # TCKD weight 1
    return (per_sample * keep).sum() / keep.sum().clamp_min(1) * tau**2


@settings(max_examples=120, deadline=None)
@given(batch=distillation_batches(),
       tau=st.sampled_from([0.5, 1.0, 4.0]),
       alpha=st.floats(0.05, 0.95),
       beta=st.sampled_from([0.5, 8.0]),
       mode=st.sampled_from(['wrong', 'margin', 'none']),
       kind=st.sampled_from(['kd', 'dkd']))
def test_loss_gradient_and_scale_match_float64(batch, tau, alpha, beta, mode,
                                               kind):
    zs64, zt64, labels = batch
    zs = zs64.float().requires_grad_()
    zt = zt64.float().requires_grad_()
    if kind == 'kd':
        out = LF.loca_kd_loss(zs, zt, labels, tau, alpha, mode,
                              ignore_index=-100)
    else:
        out = LF.dkd_loss(zs, zt, labels, tau, alpha, mode,
                          nckd_weight=beta, ignore_index=-100)
    out.loss.backward()
    assert zt.grad is None  # the teacher is detached
    zs64.requires_grad_()
    ref = reference_loss64(kind, zs64, zt64, labels, tau, alpha, beta, mode)
    ref.backward()
    # float32 terms of logit gaps near 80 / tau lose about 3e-5 of a small
    # loss to rounding (found by hypothesis: logits 24 and -60, tau 4).
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-6)
    # Autograd in float32 rounds each of a few O(1) terms (found by
    # hypothesis: 1.1e-6 off a zero gradient, DKD at tau 0.5).
    torch.testing.assert_close(zs.grad.double(), zs64.grad, rtol=1e-4,
                               atol=1e-5)
    # Per sample: the same samples calibrated as by the definition, with
    # the same s, and s exactly 1 elsewhere.
    keep = labels != -100
    assert torch.equal(out.valid, keep)
    probs = torch.softmax(zt64 / tau, -1)
    for i in range(len(labels)):
        if not keep[i]:
            assert not out.calibrated[i]
            continue
        _, s, changed = calibrate_row(probs[i].numpy(), int(labels[i]),
                                      alpha, mode)
        assert bool(out.calibrated[i]) == changed
        if changed:
            assert out.scale[i].item() == pytest.approx(s, rel=1e-5)
        else:
            assert out.scale[i].item() == 1.0


def test_nckd_is_unchanged_by_calibration():
    # LoCa keeps non-target ratios: with alpha (TCKD weight) 0, DKD+LoCa
    # equals plain DKD, while TCKD alone differs on calibrated samples.
    zs, zt = _logits((64, 10), 13), _logits((64, 10), 14)
    labels = torch.randint(0, 10, (64, ))
    nckd = [
        LF.dkd_loss(zs, zt, labels, 4.0, 0.9, mode, tckd_weight=0.0,
                    nckd_weight=1.0).loss
        for mode in ('none', 'wrong', 'margin')
    ]
    torch.testing.assert_close(nckd[1], nckd[0])
    torch.testing.assert_close(nckd[2], nckd[0])
    tckd_none = LF.dkd_loss(zs, zt, labels, 4.0, 0.9, 'none',
                            nckd_weight=0.0)
    tckd_loca = LF.dkd_loss(zs, zt, labels, 4.0, 0.9, 'wrong',
                            nckd_weight=0.0)
    assert tckd_loca.calibrated.any()
    assert abs(tckd_loca.loss.item() - tckd_none.loss.item()) > 1e-3


@pytest.mark.parametrize('loss_fn', [LF.loca_kd_loss, LF.dkd_loss])
def test_duplicating_the_batch_leaves_the_loss_unchanged(loss_fn):
    zs, zt = _logits((8, 10), 15), _logits((8, 10), 16)
    labels = torch.randint(0, 10, (8, ))
    once = loss_fn(zs, zt, labels, calibrate='none').loss
    twice = loss_fn(zs.repeat(2, 1), zt.repeat(2, 1), labels.repeat(2),
                    calibrate='none').loss
    torch.testing.assert_close(twice, once)


def test_soft_labels_use_their_argmax():
    zs, zt = _logits((8, 10), 17), _logits((8, 10), 18)
    hard = torch.randint(0, 10, (8, ))
    other = (hard + 3) % 10
    # A Mixup-style mix with lam = 0.7: the argmax is `hard`.
    soft = 0.7 * F.one_hot(hard, 10).float() + 0.3 * F.one_hot(other,
                                                               10).float()
    for fn in (LF.loca_kd_loss, LF.dkd_loss):
        torch.testing.assert_close(fn(zs, zt, soft).loss,
                                   fn(zs, zt, hard).loss)

