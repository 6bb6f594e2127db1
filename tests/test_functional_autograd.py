"""The plain losses equal the independent float64 formulas of
_reference_losses, and, being plain autograd, work under gradcheck,
gradgradcheck, torch.func and torch.compile; the chunked losses refuse what
they do not support, naming it."""
import numpy as np
import pytest
import torch
from _reference_losses import dkd_reference, loca_kd_reference
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from loca_mm import functional as LF

MODES = ['wrong', 'margin', 'none']
LOSSES = {'kd': LF.loca_kd_loss, 'dkd': LF.dkd_loss}
DIVERGENCES = {name: fn for name, fn in LF.DIVERGENCES.items()}


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
    args = dict(tau=draw(st.sampled_from([0.5, 1.0, 4.0])),
                alpha=draw(st.floats(0.05, 0.95)),
                mode=draw(st.sampled_from(MODES)),
                ignore_index=ignore_index)
    weights = (draw(st.sampled_from([0.0, 1.0, 2.0])),
               draw(st.sampled_from([0.5, 8.0])))
    return (torch.from_numpy(zs), torch.from_numpy(zt),
            torch.from_numpy(labels), args, weights)


@settings(max_examples=60, deadline=None)
@given(case=loss_cases())
def test_losses_equal_the_rowwise_float64_formulas(case):
    zs, zt, labels, args, (tckd_weight, nckd_weight) = case
    tau, alpha, mode, ignore_index = args.values()
    kd = LF.loca_kd_loss(zs, zt, labels, tau, alpha, mode,
                         ignore_index=ignore_index)
    assert kd.loss.dtype == torch.float64
    assert kd.loss.item() == pytest.approx(
        loca_kd_reference(zs, zt, labels, tau, alpha, mode, ignore_index),
        rel=1e-9, abs=1e-12)
    dkd = LF.dkd_loss(zs, zt, labels, tau, alpha, mode,
                      tckd_weight=tckd_weight, nckd_weight=nckd_weight,
                      ignore_index=ignore_index)
    assert dkd.loss.item() == pytest.approx(
        dkd_reference(zs, zt, labels, tau, tckd_weight, nckd_weight, alpha,
                      mode, ignore_index), rel=1e-9, abs=1e-12)
    assert torch.equal(kd.calibrated, dkd.calibrated)


def small_batch(rows=3, classes=4, seed=4):
    generator = torch.Generator().manual_seed(seed)
    zs = 2 * torch.randn(rows, classes, dtype=torch.float64,
                         generator=generator)
    zt = 2 * torch.randn(rows, classes, dtype=torch.float64,
                         generator=generator)
    labels = torch.randint(0, classes, (rows, ), generator=generator)
    return zs, zt, labels


@pytest.mark.parametrize('name', sorted({**LOSSES, **DIVERGENCES}))
@pytest.mark.parametrize('mode', ['wrong', 'none'])
def test_gradcheck_and_gradgradcheck_in_float64(name, mode):
    zs, zt, labels = small_batch()
    loss_fn = {**LOSSES, **DIVERGENCES}[name]

    def loss(student):
        return loss_fn(student, zt, labels, 2.0, 0.8, mode).loss

    zs.requires_grad_()
    assert torch.autograd.gradcheck(loss, (zs, ))
    assert torch.autograd.gradgradcheck(loss, (zs, ))


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_torch_func_grad_and_hessian_equal_autograd(name):
    zs, zt, labels = small_batch(5, 6)
    labels[1] = -100

    def loss(student):
        return LOSSES[name](student, zt, labels, 2.0, 0.8,
                            ignore_index=-100).loss

    student = zs.clone().requires_grad_()
    expected, = torch.autograd.grad(loss(student), student, create_graph=True)
    hessian_row, = torch.autograd.grad(expected[0, 2], student)
    torch.testing.assert_close(torch.func.grad(loss)(zs), expected.detach())
    hessian = torch.func.hessian(loss)(zs)
    torch.testing.assert_close(hessian[0, 2], hessian_row)
    assert (hessian[1] == 0).all()  # the ignored row


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_vmap_gives_the_loss_of_each_sample(name):
    zs, zt, labels = small_batch(6, 5)

    def per_sample(student, teacher, label):
        # A label check reads the labels: vmap over them needs it off.
        return LOSSES[name](student, teacher, label, 2.0, 0.8,
                            check_labels=False).loss

    losses = torch.func.vmap(per_sample)(zs[:, None], zt[:, None],
                                         labels[:, None])
    expected = torch.stack([
        LOSSES[name](zs[i:i + 1], zt[i:i + 1], labels[i:i + 1], 2.0,
                     0.8).loss for i in range(6)
    ])
    torch.testing.assert_close(losses, expected)
    with pytest.raises(ValueError, match='check_labels=False'):
        torch.func.vmap(lambda a, b, c: LF.loca_kd_loss(a, b, c).loss)(
            zs[:, None], zt[:, None], labels[:, None])


def test_compiled_losses_are_one_graph_and_equal_eager():
    torch._dynamo.reset()
    zs, zt, labels = small_batch(8, 10)
    zs, zt = zs.float(), zt.float()
    for loss_fn in (LF.loca_kd_loss, LF.dkd_loss):

        def loss(student, teacher, target):
            return loss_fn(student, teacher, target, 4.0, 0.9).loss

        compiled = torch.compile(loss, fullgraph=True)
        student = zs.clone().requires_grad_()
        value = compiled(student, zt, labels)
        grad, = torch.autograd.grad(value, student)
        eager = zs.clone().requires_grad_()
        expected = loss(eager, zt, labels)
        expected_grad, = torch.autograd.grad(expected, eager)
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(grad, expected_grad)


def chunked(loss_fn):
    return lambda *args, **kwargs: LF.chunked_distill_loss(
        loss_fn, *args, chunk_size=2, **kwargs)


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_chunked_losses_refuse_double_backward_and_transforms(name):
    zs, zt, labels = small_batch(5, 6)
    loss_fn = chunked(LOSSES[name])
    student = zs.clone().requires_grad_()
    loss = loss_fn(student, zt, labels).loss
    with pytest.raises(RuntimeError, match='chunked_distill_loss does not '
                       r'support double backward \(create_graph=True\)'):
        torch.autograd.grad(loss, student, create_graph=True)
    with pytest.raises(RuntimeError, match='chunked_distill_loss does not '
                       'support torch.func transforms'):
        torch.func.grad(lambda s: loss_fn(s, zt, labels).loss)(zs)
    hidden = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    fused = LF.fused_linear_distill_loss(hidden, weight, hidden.detach(),
                                         weight.detach(), labels,
                                         LOSSES[name], chunk_size=2).loss
    with pytest.raises(RuntimeError, match='fused_linear_distill_loss does '
                       'not support double backward'):
        torch.autograd.grad(fused, weight, create_graph=True)
