"""chunked_distill_loss: same loss and gradients, one buffer for backward."""
import pytest
import torch

from loca_mm import functional as LF

LOSSES = [LF.loca_kd_loss, LF.dkd_loss]


def token_batch(rows=37, classes=11, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    preds_S = (3 * torch.randn(
        rows, classes, generator=generator, dtype=dtype)).requires_grad_()
    preds_T = 3 * torch.randn(rows, classes, generator=generator, dtype=dtype)
    labels = torch.randint(0, classes, (rows, ), generator=generator)
    labels[::4] = -100
    return preds_S, preds_T, labels


@pytest.mark.parametrize('loss_fn', LOSSES)
@pytest.mark.parametrize('mode', ['wrong', 'margin', 'none'])
@pytest.mark.parametrize('chunk_size', [1, 5, 37, 100])
def test_chunked_equals_unchunked(loss_fn, mode, chunk_size):
    preds_S, preds_T, labels = token_batch()
    kwargs = dict(tau=2.0, calibrate=mode, ignore_index=-100)
    reference = loss_fn(preds_S, preds_T, labels, **kwargs)
    grad_ref, = torch.autograd.grad(2.5 * reference.loss, preds_S)
    chunked = LF.chunked_distill_loss(
        loss_fn, preds_S, preds_T, labels, chunk_size=chunk_size, **kwargs)
    grad, = torch.autograd.grad(2.5 * chunked.loss, preds_S)
    torch.testing.assert_close(
        chunked.loss, reference.loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-7)
    assert grad.abs().sum() > 0
    # Ignored rows get no gradient at all.
    assert (grad[labels == -100] == 0).all()
    torch.testing.assert_close(chunked.scale, reference.scale, rtol=1e-12,
                               atol=0)
    assert torch.equal(chunked.calibrated, reference.calibrated)
    assert torch.equal(chunked.valid, reference.valid)
    if mode == 'wrong':
        assert 0 < int(chunked.calibrated.sum()) < int(chunked.valid.sum())


def test_token_shaped_and_soft_labels():
    preds_S, preds_T, _ = token_batch(rows=24, classes=7)
    preds_S = preds_S.detach().view(2, 12, 7).requires_grad_()
    soft = torch.softmax(torch.randn(2, 12, 7, dtype=torch.float64), -1)
    reference = LF.loca_kd_loss(preds_S, preds_T.view(2, 12, 7), soft)
    chunked = LF.chunked_distill_loss(
        LF.loca_kd_loss, preds_S, preds_T.view(2, 12, 7), soft, chunk_size=5)
    torch.testing.assert_close(chunked.loss, reference.loss)
    grad_ref, = torch.autograd.grad(reference.loss, preds_S)
    grad, = torch.autograd.grad(chunked.loss, preds_S)
    assert grad.shape == preds_S.shape
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-7)


def test_backward_keeps_one_logits_sized_buffer():
    preds_S, preds_T, labels = token_batch(512, 1000, dtype=torch.float32)
    loss = LF.chunked_distill_loss(
        LF.loca_kd_loss,
        preds_S,
        preds_T,
        labels,
        chunk_size=64,
        ignore_index=-100).loss
    # The graph holds only the gradient w.r.t. the student logits, which
    # autograd must produce anyway (the chunks' graphs are gone); chunking
    # bounds the forward temporaries (tools/benchmark/llm_loss_memory.py).
    saved = loss.grad_fn.saved_tensors
    assert [t.shape for t in saved] == [preds_S.shape]
    assert loss.grad_fn.next_functions[0][0].variable is preds_S
    loss.backward()
    torch.testing.assert_close(preds_S.grad, saved[0])


def test_no_samples_and_all_ignored_give_zero():
    preds_S, preds_T, labels = token_batch(rows=6, classes=5)
    empty = LF.chunked_distill_loss(LF.loca_kd_loss, preds_S[:0], preds_T[:0],
                                    labels[:0])
    assert empty.loss.item() == 0 and empty.scale.numel() == 0
    ignored = LF.chunked_distill_loss(
        LF.dkd_loss,
        preds_S,
        preds_T,
        torch.full_like(labels, -100),
        chunk_size=4,
        ignore_index=-100)
    assert ignored.loss.item() == 0
    grad, = torch.autograd.grad(ignored.loss, preds_S)
    assert (grad == 0).all()


def test_without_grad_and_with_a_scaled_output():
    preds_S, preds_T, labels = token_batch()
    with torch.no_grad():
        out = LF.chunked_distill_loss(
            LF.loca_kd_loss,
            preds_S,
            preds_T,
            labels,
            chunk_size=8,
            ignore_index=-100)
    assert not out.loss.requires_grad
    reference = LF.loca_kd_loss(preds_S, preds_T, labels, ignore_index=-100)
    torch.testing.assert_close(out.loss, reference.loss.detach())


@pytest.mark.parametrize('loss_fn', LOSSES)
def test_second_backward_through_a_retained_graph_accumulates(loss_fn):
    # As for the unchunked losses (and any autograd graph): two backwards
    # give twice the gradient, and the saved gradient is not consumed.
    preds_S, preds_T, labels = token_batch()
    kwargs = dict(tau=2.0, ignore_index=-100)
    once, = torch.autograd.grad(
        loss_fn(preds_S, preds_T, labels, **kwargs).loss, preds_S)
    for loss in (loss_fn(preds_S, preds_T, labels, **kwargs).loss,
                 LF.chunked_distill_loss(
                     loss_fn, preds_S, preds_T, labels, chunk_size=8,
                     **kwargs).loss):
        preds_S.grad = None
        loss.backward(retain_graph=True)
        (3.0 * loss).backward()
        torch.testing.assert_close(preds_S.grad, 4.0 * once)


def test_bad_arguments():
    preds_S, preds_T, labels = token_batch()
    with pytest.raises(ValueError, match='chunk_size'):
        LF.chunked_distill_loss(
            LF.loca_kd_loss, preds_S, preds_T, labels, chunk_size=0)
    with pytest.raises(ValueError, match='outside'):
        LF.chunked_distill_loss(LF.loca_kd_loss, preds_S, preds_T,
                                labels.clamp_min(0) + 20)
    with pytest.raises(ValueError, match='same shape'):
        LF.chunked_distill_loss(LF.loca_kd_loss, preds_S, preds_T[:3], labels)


def test_compiled_fused_loss_equals_eager():
    # One small case: compiling takes tens of seconds on a CPU.
    generator = torch.Generator().manual_seed(0)
    hidden_S = torch.randn(40, 8, generator=generator, requires_grad=True)
    weight_S = torch.randn(30, 8, generator=generator, requires_grad=True)
    hidden_T = 2 * torch.randn(40, 8, generator=generator)
    weight_T = torch.randn(30, 8, generator=generator)
    labels = torch.randint(0, 30, (40, ), generator=generator)
    labels[::6] = -100
    results = []
    for compile in (False, True):
        result = LF.fused_linear_distill_loss(
            hidden_S, weight_S, hidden_T, weight_T, labels, chunk_size=16,
            block_size=8, ignore_index=-100, tau=2.0, compile=compile)
        results.append(
            (result, torch.autograd.grad(result.loss, (hidden_S, weight_S))))
    (eager, eager_grads), (compiled, compiled_grads) = results
    assert eager.calibrated.any()
    torch.testing.assert_close(compiled.loss, eager.loss)
    for grad, expected in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(grad, expected)
    assert torch.equal(compiled.calibrated, eager.calibrated)
    torch.testing.assert_close(compiled.scale, eager.scale)
