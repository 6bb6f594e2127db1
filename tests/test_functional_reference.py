"""The fused losses equal the plain-autograd reference (functional.reference),
in value, gradient and second derivative; the reference equals the
independent float64 formulas of _reference_losses."""
import numpy as np
import pytest
import torch
from _reference_losses import dkd_reference, loca_kd_reference
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from loca_mm import functional as LF
from loca_mm.functional import reference as R

MODES = ['wrong', 'margin', 'none']
PAIRS = {'kd': (LF.loca_kd_loss, R.loca_kd_loss),
         'dkd': (LF.dkd_loss, R.dkd_loss)}


@st.composite
def loss_cases(draw):
    """float64 logits of any leading shape, labels (some ignored), and the
    loss arguments."""
    lead = draw(st.sampled_from([(1, ), (5, ), (9, ), (2, 3)]))
    classes = draw(st.integers(2, 12))
    spread = draw(st.sampled_from([0.5, 3.0, 12.0]))
    logits = arrays(np.float64, (*lead, classes), elements=st.floats(-1, 1))
    zs, zt = draw(logits) * spread, draw(logits) * spread
    labels = draw(arrays(np.int64, lead, elements=st.integers(0, classes - 1)))
    ignore_index = draw(st.sampled_from([None, -100]))
    if ignore_index is not None:
        labels[draw(arrays(np.bool_, lead))] = ignore_index
    kind = draw(st.sampled_from(sorted(PAIRS)))
    kwargs = dict(tau=draw(st.sampled_from([0.5, 1.0, 4.0])),
                  alpha=draw(st.floats(0.05, 0.95)),
                  calibrate=draw(st.sampled_from(MODES)),
                  ignore_index=ignore_index)
    if kind == 'dkd':
        kwargs.update(tckd_weight=draw(st.sampled_from([0.0, 1.0, 2.0])),
                      nckd_weight=draw(st.sampled_from([0.5, 8.0])))
    return (kind, torch.from_numpy(zs), torch.from_numpy(zt),
            torch.from_numpy(labels), kwargs)


def first_and_second_derivatives(loss_fn, zs, zt, labels, direction,
                                 **kwargs):
    """loss, its gradient and the Hessian-vector product along direction."""
    zs = zs.detach().requires_grad_()
    out = loss_fn(zs, zt, labels, **kwargs)
    grad, = torch.autograd.grad(out.loss, zs, create_graph=True)
    hvp, = torch.autograd.grad((grad * direction).sum(), zs)
    return out, grad.detach(), hvp


@settings(max_examples=40, deadline=None)
@given(case=loss_cases(), seed=st.integers(0, 2**16))
def test_fused_losses_equal_the_reference(case, seed):
    kind, zs, zt, labels, kwargs = case
    fused_fn, reference_fn = PAIRS[kind]
    direction = torch.randn(zs.shape, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(seed))
    fused, grad, hvp = first_and_second_derivatives(
        fused_fn, zs, zt, labels, direction, **kwargs)
    ref, ref_grad, ref_hvp = first_and_second_derivatives(
        reference_fn, zs, zt, labels, direction, **kwargs)
    assert fused.loss.dtype == ref.loss.dtype == torch.float64
    torch.testing.assert_close(fused.loss, ref.loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(hvp, ref_hvp, rtol=1e-8, atol=1e-11)
    torch.testing.assert_close(fused.scale, ref.scale, rtol=1e-12, atol=0)
    assert torch.equal(fused.calibrated, ref.calibrated)
    assert torch.equal(fused.valid, ref.valid)


@pytest.mark.parametrize('kind', sorted(PAIRS))
@pytest.mark.parametrize('mode', MODES)
def test_chunked_second_derivatives_equal_the_reference(kind, mode):
    generator = torch.Generator().manual_seed(3)
    zs = 3 * torch.randn(2, 5, 7, dtype=torch.float64, generator=generator)
    zt = 3 * torch.randn(2, 5, 7, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, 7, (2, 5), generator=generator)
    labels[0, :2] = -100
    direction = torch.randn(zs.shape, dtype=torch.float64,
                            generator=generator)
    kwargs = dict(tau=2.0, calibrate=mode, ignore_index=-100)
    fused_fn, reference_fn = PAIRS[kind]

    def chunked(*args, **kw):
        return LF.chunked_distill_loss(fused_fn, *args, chunk_size=3, **kw)

    out, grad, hvp = first_and_second_derivatives(chunked, zs, zt, labels,
                                                  direction, **kwargs)
    ref, ref_grad, ref_hvp = first_and_second_derivatives(
        reference_fn, zs, zt, labels, direction, **kwargs)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(hvp, ref_hvp, rtol=1e-8, atol=1e-11)
    assert hvp.abs().sum() > 1e-3  # a real second derivative, not zero


@pytest.mark.parametrize('kind', sorted(PAIRS))
@pytest.mark.parametrize('mode', ['wrong', 'none'])
def test_gradcheck_and_gradgradcheck_in_float64(kind, mode):
    generator = torch.Generator().manual_seed(4)
    zs = (2 * torch.randn(3, 4, dtype=torch.float64,
                          generator=generator)).requires_grad_()
    zt = 2 * torch.randn(3, 4, dtype=torch.float64, generator=generator)
    labels = torch.tensor([0, 3, 1])
    fused_fn = PAIRS[kind][0]

    def loss(student):
        return fused_fn(student, zt, labels, 2.0, 0.8, mode).loss

    assert torch.autograd.gradcheck(loss, (zs, ))
    assert torch.autograd.gradgradcheck(loss, (zs, ))


def test_double_backward_after_the_logits_changed_is_an_error():
    zs = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    zt, labels = torch.randn(4, 6, dtype=torch.float64), torch.arange(4)
    for loss_fn in (LF.loca_kd_loss, LF.dkd_loss):
        student = zs * 1.0
        loss = loss_fn(student, zt, labels).loss
        with torch.no_grad():
            student.mul_(2.0)
        with pytest.raises(RuntimeError, match='double backward'):
            torch.autograd.grad(loss, zs, create_graph=True)
    for loss_fn in (LF.loca_kd_loss, LF.dkd_loss):
        # The first derivative alone never needs them.
        loss = loss_fn(zs * 1.0, zt, labels).loss
        grad, = torch.autograd.grad(loss, zs)
        assert grad.abs().sum() > 0


CASES = [(1.0, 0.9, 10, 'wrong'), (4.0, 0.5, 30, 'margin'),
         (2.0, 0.95, 5, 'none'), (0.5, 0.7, 3, 'wrong')]


@pytest.mark.parametrize('tau,alpha,classes,mode', CASES)
def test_reference_equals_the_rowwise_float64_formulas(tau, alpha, classes,
                                                       mode):
    generator = torch.Generator().manual_seed(classes)
    zs = 4 * torch.randn(32, classes, dtype=torch.float64,
                         generator=generator)
    zt = 4 * torch.randn(32, classes, dtype=torch.float64,
                         generator=generator)
    labels = torch.randint(0, classes, (32, ), generator=generator)
    labels[::5] = -100
    kd = R.loca_kd_loss(zs, zt, labels, tau, alpha, mode, ignore_index=-100)
    assert kd.loss.item() == pytest.approx(
        loca_kd_reference(zs, zt, labels, tau, alpha, mode, -100), rel=1e-9)
    dkd = R.dkd_loss(zs, zt, labels, tau, alpha, mode, tckd_weight=1.5,
                     nckd_weight=3.0, ignore_index=-100)
    assert dkd.loss.item() == pytest.approx(
        dkd_reference(zs, zt, labels, tau, 1.5, 3.0, alpha, mode, -100),
        rel=1e-9)
    if mode != 'none':
        assert kd.calibrated.any() and torch.equal(kd.calibrated,
                                                   dkd.calibrated)
