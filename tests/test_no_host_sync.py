"""Training with the registered losses reads nothing back from the device:
the calibration statistics are summed there, exactly, and read once per
log entry; a compiled training step is one graph."""
import math

import pytest
import torch
from mmengine.logging import MessageHub

from loca_mm import functional as LF
from loca_mm.engine.hooks import publish_calibration_stats
from loca_mm.models.losses import DKDLoCaLoss, LoCaLoss

# Every way a tensor value reaches Python.
HOST_READS = [(torch.Tensor, name) for name in (
    'item', 'tolist', 'numpy', '__bool__', '__float__', '__int__',
    '__index__', 'nonzero')] + [(torch, 'nonzero')]


@pytest.fixture
def no_host_reads(monkeypatch):
    """Inside ``with no_host_reads():`` any host read raises."""
    import contextlib

    @contextlib.contextmanager
    def forbid():
        with monkeypatch.context() as patch:
            for owner, name in HOST_READS:

                def read(*args, name=name, **kwargs):
                    raise AssertionError(f'host read: {name}')

                patch.setattr(owner, name, read)
            yield

    return forbid


def batch(n=32, c=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    zs = (3 * torch.randn(n, c, generator=g)).requires_grad_()
    zt = 3 * torch.randn(n, c, generator=g)
    return zs, zt, torch.randint(0, c, (n, ), generator=g)


# Default flags (label check and statistics on). The label check reads the
# labels on CPU in eager mode only; the tests take the path of a GPU (and of
# torch.compile), a device-side assertion.
LOSSES = {
    'loca_wrong': lambda: LoCaLoss(loss_weight=0.5),
    'loca_margin': lambda: LoCaLoss(calibrate='margin'),
    'loca_ignore': lambda: LoCaLoss(ignore_index=-100),
    'dkd_wrong': lambda: DKDLoCaLoss(tckd_weight=0.5),
    'dkd_margin': lambda: DKDLoCaLoss(calibrate='margin'),
    'dkd_warmup_iters': lambda: DKDLoCaLoss(warmup_iters=4),
}


def reference_counts(zt, y, tau, alpha, calibrate, ignore_index=None):
    """(valid, calibrated, sum of s) in float64 from LoCa's definition."""
    p = (zt.double() / tau).softmax(-1)
    valid = torch.ones_like(y, dtype=torch.bool) if ignore_index is None \
        else y != ignore_index
    y = y * valid
    p_y = p.gather(1, y[:, None]).squeeze(1)
    p_k = p.scatter(1, y[:, None], -1.0).amax(1)
    sigma = 1.0 / (1.0 - p_y + p_k)
    if calibrate == 'wrong':
        calibrated = p_k >= p_y
        scale = alpha * sigma
    else:
        calibrated = alpha * sigma < 1.0
        scale = alpha * sigma
    calibrated &= valid
    return (valid.sum().item(), calibrated.sum().item(),
            scale[calibrated].sum().item())


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_training_forward_backward_reads_nothing_back(name, no_host_reads,
                                                     monkeypatch):
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    loss = LOSSES[name]()
    loss.attach_runner(train_loop_by_epoch=False)
    loss.set_training_progress(0, 1)
    loss.train()
    batches = [batch(seed=seed) for seed in range(3)]
    if name.endswith('ignore'):
        batches[1][2][:5] = -100
    soft = torch.nn.functional.one_hot(batches[2][2], 10).float()
    batches[2] = (*batches[2][:2], 0.7 * soft + 0.03)  # Mixup-like labels
    with no_host_reads():
        for zs, zt, y in batches:
            out = loss(zs, zt, y)
            out.backward()
    # The host-read trap was live: the same calls outside it work, and a
    # read inside it raises.
    with no_host_reads(), pytest.raises(AssertionError, match='host read'):
        out.item()

    expected = [0.0, 0.0, 0.0]
    for zs, zt, y in batches:
        labels = y.argmax(-1) if y.is_floating_point() else y
        counts = reference_counts(zt, labels, loss.tau, loss.alpha,
                                  loss.calibrate, loss.ignore_index)
        expected = [a + b for a, b in zip(expected, counts)]
    totals = loss.take_calibration_totals()
    assert totals.tolist() == pytest.approx(expected, rel=1e-6)
    assert 0 < expected[1] < expected[0]
    # Taken: the next window starts from zero.
    assert loss.take_calibration_totals().tolist() == [0.0, 0.0, 0.0]


def test_published_window_is_exact_and_read_once(monkeypatch):
    """Two windows of different lengths and batch sizes: the ratio is
    calibrated / valid of the window (not a mean of batch ratios) and the
    scale the mean s over its calibrated samples."""
    hub = MessageHub.get_instance('test_publish_window')
    loss = LoCaLoss(tau=2.0, check_labels=False)
    loss.attach_runner(train_loop_by_epoch=True)
    windows = [[batch(n=8, seed=1), batch(n=40, seed=2)], [batch(n=16, seed=3)]]
    reads = []
    real_tolist = torch.Tensor.tolist

    def counted_tolist(self):
        reads.append(tuple(self.shape))
        return real_tolist(self)

    for window in windows:
        for zs, zt, y in window:
            loss(zs, zt, y).backward()
        valid = calibrated = scale_sum = 0.0
        for _, zt, y in window:
            v, c, s = reference_counts(zt, y, 2.0, 0.9, 'wrong')
            valid, calibrated, scale_sum = valid + v, calibrated + c, \
                scale_sum + s
        with monkeypatch.context() as patch:
            patch.setattr(torch.Tensor, 'tolist', counted_tolist)
            publish_calibration_stats(hub, loss.take_calibration_totals())
        assert reads == [(3, )]  # one read of the three sums
        reads.clear()
        ratio = hub.get_scalar('train/loca_ratio')
        # Whatever the LogProcessor's window, it sees this window's value.
        assert ratio.current() == ratio.mean(10) == pytest.approx(
            calibrated / valid, rel=1e-6)
        assert hub.get_scalar('train/loca_scale').mean(10) == pytest.approx(
            scale_sum / calibrated, rel=1e-6)
        mean_of_batch_ratios = sum(
            reference_counts(zt, y, 2.0, 0.9, 'wrong')[1] / len(y)
            for _, zt, y in window) / len(window)
        if len(window) > 1:
            assert not math.isclose(mean_of_batch_ratios, calibrated / valid)

    # A window without a calibrated sample has no mean s: not repeated.
    zs, zt, y = batch(n=8, seed=4)
    y = zt.argmax(-1)  # the teacher is right everywhere
    loss(zs, zt, y)
    publish_calibration_stats(hub, loss.take_calibration_totals())
    assert hub.get_scalar('train/loca_ratio').current() == 0.0
    assert 'train/loca_scale' not in hub.log_scalars


@pytest.mark.parametrize('loss_type', [LoCaLoss, DKDLoCaLoss])
def test_totals_stay_exact_over_many_calls(loss_type):
    """Over many calls with batches of changing size and ignored samples,
    the totals are the counts of every sample; a runner attached afresh
    starts a new window."""
    loss = loss_type(tau=2.0, ignore_index=-100)
    loss.attach_runner(train_loop_by_epoch=False)
    expected = [0.0, 0.0, 0.0]
    for call in range(20):
        zs, zt, y = batch(n=3 + call % 5, seed=call)
        y[0] = -100 if call % 3 == 0 else y[0]
        loss(zs, zt, y)
        counts = reference_counts(zt, y, 2.0, 0.9, 'wrong', -100)
        expected = [a + b for a, b in zip(expected, counts)]
    totals = loss.take_calibration_totals()
    assert totals.tolist() == pytest.approx(expected, rel=1e-6)
    loss(*batch(seed=99))
    loss.attach_runner(train_loop_by_epoch=False)
    assert loss.take_calibration_totals().tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize('loss_type', [LoCaLoss, DKDLoCaLoss])
def test_totals_are_no_buffer_and_survive_casts(loss_type):
    """A DDP wrapper broadcasts rank 0's buffers to every process before
    each forward (broadcast_buffers=True), and checkpoints hold buffers:
    the counts must be in neither. Casting the model keeps them, float32."""
    model = torch.nn.Sequential(torch.nn.Linear(10, 10), loss_type())
    loss = model[1]
    assert all(t is not loss.calibration_totals for t in model.buffers())
    assert not any('calibration' in k for k in model.state_dict())
    loss.attach_runner(train_loop_by_epoch=False)
    zs, zt, y = batch()
    loss(zs, zt, y)
    model.half().float()
    totals = loss.take_calibration_totals()
    assert totals.dtype == torch.float32
    assert totals.tolist() == pytest.approx(
        reference_counts(zt, y, 4.0, 0.9, 'wrong'), rel=1e-6)


def test_eval_mode_and_calibrate_none_accumulate_nothing():
    loss = LoCaLoss(check_labels=False)
    loss.attach_runner(train_loop_by_epoch=True)
    loss.eval()
    loss(*batch())
    assert loss.take_calibration_totals().tolist() == [0.0, 0.0, 0.0]
    plain = DKDLoCaLoss(calibrate='none')
    assert not plain.collects_stats


def test_uncollected_statistics_warn_once():
    loss = LoCaLoss()
    with pytest.warns(UserWarning, match='LoCaLossHook'):
        loss(*batch())
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        loss(*batch())
    # Still summed: a plain training loop can read them.
    summary = LF.calibration_summary(loss.take_calibration_totals())
    assert 0 < summary['loca_ratio'] < 1


@pytest.mark.parametrize('loss_type', [LoCaLoss, DKDLoCaLoss])
def test_compiled_training_step_is_one_graph_and_equals_eager(loss_type):
    eager = loss_type(loss_weight=0.7)
    compiled = loss_type(loss_weight=0.7)
    for loss in (eager, compiled):
        loss.attach_runner(train_loop_by_epoch=True)

    def step(loss, zs, zt, y):
        return loss(zs, zt, y)

    step_compiled = torch.compile(step, fullgraph=True, backend='aot_eager')
    for seed in range(2):
        zs, zt, y = batch(seed=seed)
        zs_c = zs.detach().clone().requires_grad_()
        out = step(eager, zs, zt, y)
        out_c = step_compiled(compiled, zs_c, zt, y)
        out.backward()
        out_c.backward()
        torch.testing.assert_close(out_c, out)
        torch.testing.assert_close(zs_c.grad, zs.grad)
    torch.testing.assert_close(compiled.take_calibration_totals(),
                               eager.take_calibration_totals())
