"""The functional losses at the edges of their inputs: -inf logits, NaN,
dtypes, and the label check without a host read."""
import pytest
import torch

from loca_mm import functional as LF

MODES = ['wrong', 'margin', 'none']
INF = float('inf')


def chunked_kd(*args, **kwargs):
    return LF.chunked_distill_loss(LF.loca_kd_loss, *args, chunk_size=3,
                                   **kwargs)


def chunked_dkd(*args, **kwargs):
    return LF.chunked_distill_loss(LF.dkd_loss, *args, chunk_size=3, **kwargs)


LOSSES = {
    'kd': LF.loca_kd_loss, 'dkd': LF.dkd_loss, 'chunked_kd': chunked_kd,
    'chunked_dkd': chunked_dkd
}


def batch(rows=8, classes=9, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    zs = 3 * torch.randn(rows, classes, generator=generator, dtype=dtype)
    zt = 3 * torch.randn(rows, classes, generator=generator, dtype=dtype)
    labels = torch.randint(0, classes, (rows, ), generator=generator)
    return zs, zt, labels


def loss_and_grad(loss_fn, zs, zt, labels, **kwargs):
    zs = zs.detach().requires_grad_()
    out = loss_fn(zs, zt, labels, tau=2.0, **kwargs)
    grad, = torch.autograd.grad(out.loss, zs)
    return out, grad


@pytest.mark.parametrize('name', sorted(LOSSES))
@pytest.mark.parametrize('mode', MODES)
def test_columns_masked_in_both_equal_the_columns_removed(name, mode):
    zs, zt, labels = batch()
    masked = torch.tensor([1, 4, 5])
    labels = torch.tensor([0, 2, 3, 6, 7, 8, 0, 2])  # never a masked class
    keep = torch.tensor([0, 2, 3, 6, 7, 8])
    # Vocabulary masking as language models do it: -inf in both logits.
    zs_masked = zs.index_fill(1, masked, -INF)
    zt_masked = zt.index_fill(1, masked, -INF)
    out, grad = loss_and_grad(LOSSES[name], zs_masked, zt_masked, labels,
                              calibrate=mode)
    position = torch.full((9, ), -1).index_copy_(0, keep, torch.arange(6))
    removed, grad_removed = loss_and_grad(LOSSES[name], zs[:, keep],
                                          zt[:, keep], position[labels],
                                          calibrate=mode)
    assert torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss, removed.loss, rtol=1e-12, atol=0)
    assert (grad[:, masked] == 0).all()
    torch.testing.assert_close(grad[:, keep], grad_removed, rtol=1e-10,
                               atol=1e-14)
    assert torch.equal(out.calibrated, removed.calibrated)


@pytest.mark.parametrize('name', sorted(LOSSES))
@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('at_label', [False, True])
def test_teacher_minus_inf_is_a_zero_probability(name, mode, at_label):
    # The teacher gives the class no mass, exactly as a logit so low that
    # its probability is 0 in float64; the student keeps its own there.
    zs, zt, labels = batch(seed=1)
    rows = torch.arange(len(labels))
    column = labels if at_label else (labels + 1) % zt.shape[1]
    masked, low = zt.clone(), zt.clone()
    masked[rows, column] = -INF
    low[rows, column] = -1e5
    out, grad = loss_and_grad(LOSSES[name], zs, masked, labels,
                              calibrate=mode)
    expected, expected_grad = loss_and_grad(LOSSES[name], zs, low, labels,
                                            calibrate=mode)
    assert torch.isfinite(out.loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(out.loss, expected.loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)
    if at_label and mode != 'none':  # p_y = 0: the teacher is wrong
        assert out.calibrated.all()


@pytest.mark.parametrize('name', sorted(LOSSES))
@pytest.mark.parametrize('mode', MODES)
def test_student_minus_inf_where_the_teacher_has_mass_is_inf(name, mode):
    zs, zt, labels = batch(seed=2)
    zs[3, (labels[3] + 1) % zs.shape[1]] = -INF  # the teacher has mass there
    out, grad = loss_and_grad(LOSSES[name], zs, zt, labels, calibrate=mode)
    assert out.loss.item() == INF
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize('name', sorted(LOSSES))
@pytest.mark.parametrize('where', ['student', 'teacher'])
def test_nan_logits_give_a_nan_loss(name, where):
    zs, zt, labels = batch(seed=3)
    (zs if where == 'student' else zt)[2, 5] = float('nan')
    zs[4, 1] = zt[4, 1] = -INF  # also next to a masked column
    for mode in MODES:
        out = LOSSES[name](zs, zt, labels, calibrate=mode)
        assert out.loss.isnan()


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_soft_labels_with_nan_are_refused(name):
    zs, zt, labels = batch(seed=4)
    soft = torch.nn.functional.one_hot(labels, 9).double()
    soft[1] = float('nan')
    with pytest.raises(ValueError, match='soft label holds NaN'):
        LOSSES[name](zs, zt, soft)
    # Without the check the sample points at no class: an error, not a loss.
    with pytest.raises((RuntimeError, IndexError)):
        LOSSES[name](zs, zt, soft, check_labels=False)


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_float64_stays_float64_and_half_precision_computes_in_float32(name):
    zs, zt, labels = batch(seed=5)
    # float64 in, float64 out: a difference float32 cannot resolve shows.
    out = LOSSES[name](zs, zt, labels)
    shifted = LOSSES[name](zs, zt + 1e-9 * torch.arange(9.0), labels)
    assert out.loss.dtype == torch.float64
    assert out.loss != shifted.loss
    # One float64 input is enough to compute in float64.
    assert LOSSES[name](zs.float(), zt, labels).loss.dtype == torch.float64
    for half in (torch.float16, torch.bfloat16):
        zs_half = zs.to(half).requires_grad_()
        loss = LOSSES[name](zs_half, zt.to(half), labels).loss
        assert loss.dtype == torch.float32
        loss.backward()
        assert zs_half.grad.dtype == half
        expected = LOSSES[name](zs.to(half).double(), zt.to(half).double(),
                                labels).loss
        torch.testing.assert_close(loss.double(), expected, rtol=1e-5,
                                   atol=1e-6)


def test_calibrated_log_probs_of_float64_are_float64():
    _, zt, labels = batch(seed=6)
    log_q = LF.loca_log_probs(zt, labels).log_probs
    assert log_q.dtype == torch.float64
    expected = LF.loca_calibrate(torch.softmax(zt / 4.0, -1), labels).probs
    torch.testing.assert_close(log_q.exp(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_label_check_on_the_host_names_the_label(name):
    zs, zt, labels = batch(seed=7)
    labels[2] = 9
    with pytest.raises(ValueError, match=r'label 9 is outside \[0, 9\)'):
        LOSSES[name](zs, zt, labels)


@pytest.fixture
def device_side_checks(monkeypatch):
    """What a GPU or torch.compile sees: the check must not read a value
    back (every host read raises here), and fails as a device assertion."""
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)

    def host_read(*args):
        raise AssertionError('a tensor value was read back to the host')

    for method in ('item', 'tolist', '__bool__', '__int__', '__float__',
                   'nonzero'):
        monkeypatch.setattr(torch.Tensor, method, host_read)


@pytest.mark.parametrize('loss_fn', [LF.loca_kd_loss, LF.dkd_loss])
def test_label_check_as_a_device_assertion(device_side_checks, loss_fn):
    zs, zt, labels = batch(seed=8)
    loss_fn(zs, zt, labels)  # in range: no host read, no error
    labels[5] = -3
    with pytest.raises(RuntimeError, match=r'outside \[0, 9\)'):
        loss_fn(zs, zt, labels)


@pytest.mark.parametrize('loss_fn', [LF.loca_kd_loss, LF.dkd_loss])
@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('bad, ignore_index', [(9, None), (-1, None),
                                               (12, -100), (-5, -100)])
def test_label_check_on_the_host_names_the_label_in_every_mode(
        loss_fn, mode, bad, ignore_index):
    zs, zt, labels = batch(seed=9)
    labels[0] = -100 if ignore_index is not None else labels[0]
    labels[6] = bad
    message = (rf'label {bad} is outside \[0, 9\) and is not ignore_index '
               rf'\({ignore_index}\)')
    with pytest.raises(ValueError, match=message):
        loss_fn(zs, zt, labels, calibrate=mode, ignore_index=ignore_index)
