"""torch.compile(fullgraph=True) of code that calls the functional losses:
one graph (no host read, no graph break), equal to eager, with backward."""
import pytest
import torch

from loca_mm import functional as LF


def distill_step(preds_S, preds_T, labels):
    """What a training step asks of the losses: both of them, their
    calibration statistics, labels checked, some samples ignored."""
    kd = LF.loca_kd_loss(preds_S, preds_T, labels, 4.0, 0.9, 'wrong',
                         ignore_index=-100)
    dkd = LF.dkd_loss(preds_S, preds_T, labels, 4.0, 0.9, 'margin',
                      nckd_weight=2.0, ignore_index=-100)
    return kd.loss + dkd.loss, LF.calibration_counts(kd)


def inputs(rows=8, classes=10):
    generator = torch.Generator().manual_seed(0)
    preds_S = torch.randn(rows, classes, generator=generator)
    preds_T = 3 * torch.randn(rows, classes, generator=generator)
    labels = torch.randint(0, classes, (rows, ), generator=generator)
    labels[2] = -100
    return preds_S, preds_T, labels


@pytest.mark.parametrize('backend', ['inductor'])
def test_compiled_losses_equal_eager(backend):
    preds_S, preds_T, labels = inputs()
    compiled = torch.compile(distill_step, backend=backend, fullgraph=True,
                             dynamic=False)
    results = []
    for step in (distill_step, compiled):
        student = preds_S.clone().requires_grad_()
        loss, counts = step(student, preds_T, labels)
        loss.backward()
        results.append((loss.detach(), counts, student.grad))
    (loss, counts, grad), (compiled_loss, compiled_counts,
                           compiled_grad) = results
    assert counts[1] > 0  # LoCa changed some samples
    torch.testing.assert_close(compiled_loss, loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled_counts, counts)
    torch.testing.assert_close(compiled_grad, grad, rtol=1e-5, atol=1e-7)
    assert grad.abs().sum() > 0


def test_compiled_label_check_is_a_device_assertion():
    preds_S, preds_T, labels = inputs()
    labels[3] = 10
    compiled = torch.compile(distill_step, backend='aot_eager',
                             fullgraph=True, dynamic=False)
    with pytest.raises(RuntimeError, match=r'outside \[0, 10\)'):
        compiled(preds_S, preds_T, labels)
