"""The divergences of LLM distillation and the fused-linear token loss.

The divergences are compared with float64 numpy statements written here
from their definitions (TRL's generalized JSD, DistiLLM's skew KLs), on the
LoCa teacher of tests/_reference_losses.py; the fused loss with the loss on
materialised logits, in value and in every gradient.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _reference_losses import calibrate_row, softmax64

from loca_mm import functional as LF


def kl64(a, b):
    """KL(a || b) of two probability rows, 0 log 0 = 0."""
    keep = a > 0
    return float(np.sum(a[keep] * (np.log(a[keep]) - np.log(b[keep]))))


def divergence64(name, s, q, beta=0.5, skew=0.1):
    """The per-token divergence between student s and teacher q."""
    if name == 'fkl':
        return kl64(q, s)
    if name == 'rkl':
        return kl64(s, q)
    if name == 'jsd':
        if beta == 0:
            return kl64(q, s)
        if beta == 1:
            return kl64(s, q)
        m = (1 - beta) * s + beta * q
        return beta * kl64(q, m) + (1 - beta) * kl64(s, m)
    if name == 'skl':
        return kl64(q, skew * q + (1 - skew) * s)
    if name == 'srkl':
        return kl64(s, (1 - skew) * q + skew * s)
    raise KeyError(name)


def reference64(name,
                preds_S,
                preds_T,
                labels,
                tau,
                alpha,
                calibrate,
                ignore_index=None,
                **params):
    total, count = 0.0, 0
    for row_s, row_t, y in zip(preds_S.double().numpy(),
                               preds_T.double().numpy(), labels.numpy()):
        if ignore_index is not None and y == ignore_index:
            continue
        q, _, _ = calibrate_row(
            softmax64(row_t, tau), int(y), alpha, calibrate)
        total += divergence64(name, softmax64(row_s, tau), q, **params)
        count += 1
    return tau**2 * total / max(count, 1)


def logits_with_wrong_teacher(rows=12, classes=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    preds_S = torch.randn(rows, classes, generator=generator)
    preds_T = 2 * torch.randn(rows, classes, generator=generator)
    labels = torch.randint(0, classes, (rows, ), generator=generator)
    # The teacher is right on the even rows: 'wrong' calibrates the others.
    right = torch.arange(rows) % 2 == 0
    preds_T[right] += 10 * F.one_hot(labels[right], classes)
    return preds_S, preds_T, labels


CASES = [('fkl', {}), ('rkl', {}), ('jsd', {
    'beta': 0.5
}), ('jsd', {
    'beta': 0.1
}), ('jsd', {
    'beta': 0.0
}), ('jsd', {
    'beta': 1.0
}), ('skl', {
    'skew': 0.1
}), ('skl', {
    'skew': 0.4
}), ('srkl', {
    'skew': 0.1
}), ('srkl', {
    'skew': 0.0
})]


@pytest.mark.parametrize('name,params', CASES)
@pytest.mark.parametrize('calibrate', ['wrong', 'margin', 'none'])
def test_divergence_equals_float64_formula(name, params, calibrate):
    preds_S, preds_T, labels = logits_with_wrong_teacher()
    labels[3] = -100
    tau, alpha = 2.0, 0.8
    result = LF.DIVERGENCES[name](
        preds_S,
        preds_T,
        labels,
        tau,
        alpha,
        calibrate,
        ignore_index=-100,
        **params)
    expected = reference64(name, preds_S, preds_T, labels, tau, alpha,
                           calibrate, -100, **params)
    assert result.loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert result.valid.tolist() == [i != 3 for i in range(12)]
    if calibrate == 'wrong':
        assert 0 < int(result.calibrated.sum()) < 11


@pytest.mark.parametrize('name,params', [c for c in CASES if c[0] != 'fkl'])
def test_divergence_gradient_matches_finite_differences(name, params):
    preds_S, preds_T, labels = logits_with_wrong_teacher(rows=3, classes=4)
    preds_S = preds_S.double().requires_grad_()
    torch.autograd.gradcheck(
        lambda s: LF.DIVERGENCES[name]
        (s, preds_T, labels, 1.5, 0.9, 'wrong', **params).loss, (preds_S, ))


def test_divergence_endpoints_and_zero_at_equality():
    preds_S, preds_T, labels = logits_with_wrong_teacher()
    args = (preds_S, preds_T, labels, 1.0, 0.9, 'none')
    fkl = LF.loca_kd_loss(*args).loss
    rkl = LF.reverse_kl_loss(*args).loss
    torch.testing.assert_close(
        LF.generalized_jsd_loss(*args, beta=0).loss, fkl)
    torch.testing.assert_close(
        LF.generalized_jsd_loss(*args, beta=1).loss, rkl)
    torch.testing.assert_close(LF.skew_kl_loss(*args, skew=0).loss, fkl)
    torch.testing.assert_close(
        LF.skew_reverse_kl_loss(*args, skew=0).loss, rkl)
    same = (preds_T, preds_T, labels, 1.0, 0.9, 'none')
    for name in LF.DIVERGENCES:
        assert abs(LF.DIVERGENCES[name](*same).loss.item()) < 1e-6, name


def test_divergence_arguments_are_checked():
    preds_S, preds_T, labels = logits_with_wrong_teacher()
    with pytest.raises(
            ValueError, match=r'beta must lie in \[0, 1\], got 1.5'):
        LF.generalized_jsd_loss(preds_S, preds_T, labels, beta=1.5)
    with pytest.raises(ValueError, match=r'skew must lie in \[0, 1\)'):
        LF.skew_kl_loss(preds_S, preds_T, labels, skew=1.0)
    with pytest.raises(ValueError, match='alpha'):
        LF.reverse_kl_loss(preds_S, preds_T, labels, alpha=1.0)
    with pytest.raises(ValueError, match='same shape'):
        LF.reverse_kl_loss(preds_S, preds_T[:, :4], labels)


# ---- fused linear ----------------------------------------------------------


def projection_inputs(rows=37,
                      hidden=6,
                      teacher_hidden=5,
                      vocab=11,
                      bias=True,
                      dtype=torch.float32,
                      seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=generator)).to(dtype)

    inputs = {
        'student_hidden': randn(rows, hidden).requires_grad_(),
        'student_weight': randn(vocab, hidden).requires_grad_(),
        'teacher_hidden': randn(rows, teacher_hidden, scale=2.0),
        'teacher_weight': randn(vocab, teacher_hidden, scale=2.0),
    }
    if bias:
        inputs['student_bias'] = randn(vocab).requires_grad_()
        inputs['teacher_bias'] = randn(vocab)
    labels = torch.randint(0, vocab, (rows, ), generator=generator)
    labels[::5] = -100
    return inputs, labels


def materialised(inputs, labels, loss_fn, **kwargs):
    logits_S = F.linear(inputs['student_hidden'], inputs['student_weight'],
                        inputs.get('student_bias'))
    logits_T = F.linear(inputs['teacher_hidden'], inputs['teacher_weight'],
                        inputs.get('teacher_bias'))
    return loss_fn(logits_S, logits_T, labels, **kwargs)


STUDENT = ('student_hidden', 'student_weight', 'student_bias')

LOSSES = [(LF.loca_kd_loss, dict(tau=2.0, alpha=0.8)),
          (LF.dkd_loss, dict(tau=2.0, nckd_weight=4.0)),
          (LF.reverse_kl_loss, dict(tau=1.5)),
          (LF.generalized_jsd_loss, dict(beta=0.3)),
          (LF.skew_kl_loss, dict(skew=0.2)),
          (LF.skew_reverse_kl_loss, dict(calibrate='margin'))]


@pytest.mark.parametrize('loss_fn,kwargs', LOSSES)
# 29 kept rows of 37: chunks of 8 (the last short) with loss calls on blocks
# of 3 (a short block in every chunk); chunks of 16 and 13 in blocks of 5;
# one chunk and one block; one chunk in blocks of 10; a block larger than
# the chunk.
@pytest.mark.parametrize('chunk_size,block_size',
                         [(1, 256), (8, 3), (16, 5), (29, 29), (1024, 10),
                          (1024, 256)])
def test_fused_equals_materialised_in_value_and_gradients(
        loss_fn, kwargs, chunk_size, block_size):
    inputs, labels = projection_inputs()
    expected = materialised(
        inputs, labels, loss_fn, ignore_index=-100, **kwargs)
    result = LF.fused_linear_distill_loss(
        **inputs,
        target=labels,
        loss_fn=loss_fn,
        chunk_size=chunk_size,
        block_size=block_size,
        ignore_index=-100,
        **kwargs)
    torch.testing.assert_close(result.loss, expected.loss)
    assert torch.equal(result.valid, expected.valid)
    assert torch.equal(result.calibrated, expected.calibrated)
    # The materialised loss leaves the scale of ignored rows unspecified.
    torch.testing.assert_close(result.scale[result.valid],
                               expected.scale[expected.valid])
    student = [inputs[name] for name in STUDENT]
    torch.testing.assert_close(
        torch.autograd.grad(result.loss, student),
        torch.autograd.grad(expected.loss, student))


def test_fused_teacher_gets_no_gradient_and_ignored_rows_do_not_count():
    inputs, labels = projection_inputs(bias=False)
    for name in ('teacher_hidden', 'teacher_weight'):
        inputs[name].requires_grad_()
    result = LF.fused_linear_distill_loss(
        **inputs, target=labels, chunk_size=4, ignore_index=-100)
    result.loss.backward()
    assert inputs['teacher_hidden'].grad is None
    assert inputs['teacher_weight'].grad is None
    ignored = labels == -100
    assert (inputs['student_hidden'].grad[ignored] == 0).all()
    assert (inputs['student_hidden'].grad[~ignored].abs().sum(-1) > 0).all()
    # Garbage in ignored rows changes nothing.
    noisy = dict(inputs)
    noisy['student_hidden'] = inputs['student_hidden'].detach().clone()
    noisy['student_hidden'][ignored] = float('nan')
    noisy['teacher_hidden'] = inputs['teacher_hidden'].detach().clone()
    noisy['teacher_hidden'][ignored] = 1e4
    again = LF.fused_linear_distill_loss(
        **noisy, target=labels, chunk_size=4, ignore_index=-100)
    torch.testing.assert_close(again.loss, result.loss)
    assert result.scale[ignored].eq(1).all()
    assert not result.calibrated[ignored].any()


def test_fused_frozen_weight_scaled_backward_and_refusals():
    inputs, labels = projection_inputs(bias=False)
    inputs['student_weight'].requires_grad_(False)
    first, = torch.autograd.grad(
        LF.fused_linear_distill_loss(
            **inputs, target=labels, chunk_size=7, ignore_index=-100).loss,
        inputs['student_hidden'])
    result = LF.fused_linear_distill_loss(
        **inputs, target=labels, chunk_size=7, ignore_index=-100)
    (3 * result.loss).backward(retain_graph=True)
    torch.testing.assert_close(inputs['student_hidden'].grad, 3 * first)
    assert inputs['student_weight'].grad is None
    # A second backward through the retained graph accumulates.
    result.loss.backward()
    torch.testing.assert_close(inputs['student_hidden'].grad, 4 * first)
    with pytest.raises(RuntimeError, match='double backward'):
        loss = LF.fused_linear_distill_loss(
            **inputs, target=labels, ignore_index=-100).loss
        torch.autograd.grad(loss, inputs['student_hidden'], create_graph=True)


def test_fused_bfloat16_inputs_match_materialised():
    inputs, labels = projection_inputs(
        rows=40, hidden=16, teacher_hidden=16, vocab=50, dtype=torch.bfloat16)
    expected = materialised(inputs, labels, LF.loca_kd_loss, ignore_index=-100)
    result = LF.fused_linear_distill_loss(
        **inputs, target=labels, chunk_size=16, block_size=5,
        ignore_index=-100)
    assert result.loss.dtype == torch.float32
    torch.testing.assert_close(
        result.loss, expected.loss, rtol=2e-3, atol=1e-4)
    student = [inputs[name] for name in STUDENT]
    grads = torch.autograd.grad(result.loss, student)
    grads_ref = torch.autograd.grad(expected.loss, student)
    for grad, grad_ref in zip(grads, grads_ref):
        assert grad.dtype == torch.bfloat16
        torch.testing.assert_close(
            grad.float(), grad_ref.float(), rtol=2e-2, atol=2e-3)


def test_fused_all_rows_ignored_and_bad_inputs():
    inputs, labels = projection_inputs(bias=False)
    result = LF.fused_linear_distill_loss(
        **inputs, target=torch.full_like(labels, -100), ignore_index=-100)
    assert result.loss.item() == 0.0 and not result.valid.any()
    with pytest.raises(ValueError, match='outside'):
        LF.fused_linear_distill_loss(**inputs, target=labels)
    for bad in (dict(chunk_size=0), dict(block_size=0),
                dict(block_size=2.5), dict(chunk_size=True)):
        name, value = next(iter(bad.items()))
        with pytest.raises(ValueError, match=f'{name} must be an int >= 1, '
                           f'got {value!r}'):
            LF.fused_linear_distill_loss(
                **inputs, target=labels, ignore_index=-100, **bad)
    with pytest.raises(ValueError, match='student_weight expects 6'):
        LF.fused_linear_distill_loss(inputs['student_hidden'][:, :5],
                                     inputs['student_weight'],
                                     inputs['teacher_hidden'],
                                     inputs['teacher_weight'], labels)
    with pytest.raises(
            ValueError, match=r'labels of shape \(36,\).*do not fit'):
        LF.fused_linear_distill_loss(**inputs, target=labels[:-1])
