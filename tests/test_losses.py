"""The registered mmrazor losses: construction, bad input, logging, warm-up."""
import pytest
import torch
from _reference_losses import dkd_reference, loca_kd_reference
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings

from loca_mm import functional as LF

LOSS_TYPES = ['LoCaLoss', 'DKDLoCaLoss']


def build(loss_type, **kwargs):
    # The way a config reaches the losses: custom_imports, then the registry.
    cfg = Config(
        dict(
            custom_imports=dict(imports=['loca_mm'],
                                allow_failed_imports=False),
            # Explicit scope: a Runner built by an earlier test may have left
            # another default scope current.
            loss=dict(_scope_='mmrazor', type=loss_type, **kwargs)))
    import_modules_from_strings(**cfg.custom_imports)
    from mmrazor.registry import MODELS
    return MODELS.build(cfg.loss)


def batch(n=16, c=10, seed=0, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    zs = (torch.randn(n, c, generator=g) * scale).requires_grad_()
    zt = torch.randn(n, c, generator=g) * scale
    return zs, zt, torch.randint(0, c, (n, ), generator=g)


def test_registered_modules_compute_the_documented_loss():
    zs, zt, y = batch()
    loca = build('LoCaLoss', tau=2.0, alpha=0.8, loss_weight=0.9)
    ref = 0.9 * loca_kd_reference(zs.detach(), zt, y, 2.0, 0.8, 'wrong')
    assert loca(zs, zt, y).item() == pytest.approx(ref, rel=2e-5)
    dkd = build('DKDLoCaLoss', tau=4.0, nckd_weight=2.0, alpha=0.9,
                calibrate='margin', loss_weight=0.5)
    ref = 0.5 * dkd_reference(zs.detach(), zt, y, 4.0, 1.0, 2.0, 0.9,
                              'margin')
    assert dkd(zs, zt, y).item() == pytest.approx(ref, rel=2e-5)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
@pytest.mark.parametrize('kwargs,match', [
    (dict(tau=0.0), 'tau'),
    (dict(tau=-1.0), 'tau'),
    (dict(calibrate='all'), 'calibrate'),
])
def test_bad_hyper_parameters_fail_at_construction(loss_type, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(loss_type, **kwargs)


@pytest.mark.parametrize('alpha', [0.0, 1.0, 1.5, -0.1])
def test_alpha_outside_open_unit_interval_is_refused(alpha):
    with pytest.raises(ValueError, match='alpha'):
        build('LoCaLoss', alpha=alpha)
    with pytest.raises(ValueError, match='alpha'):
        build('DKDLoCaLoss', alpha=alpha)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_shape_and_dtype_errors_name_the_shapes(loss_type):
    loss = build(loss_type)
    zs, zt, y = batch()
    with pytest.raises(ValueError, match=r'\(16, 10\).*\(16, 9\)'):
        loss(zs, zt[:, :9], y)
    with pytest.raises(ValueError, match=r'\(15,\)'):
        loss(zs, zt, y[:15])
    with pytest.raises(ValueError, match='float32'):
        loss(zs, zt, y.float())  # float hard labels: ambiguous, refused
    with pytest.raises(ValueError, match='bool'):
        loss(zs, zt, y > 3)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
@pytest.mark.parametrize('bad', [10, 57, -3])
def test_label_out_of_range_is_named(loss_type, bad):
    loss = build(loss_type)
    zs, zt, y = batch()
    y[5] = bad
    with pytest.raises(ValueError, match=f'label {bad} is outside'):
        loss(zs, zt, y)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_ignore_index_is_not_out_of_range(loss_type):
    loss = build(loss_type, ignore_index=-100)
    zs, zt, y = batch()
    y[:4] = -100
    out = loss(zs, zt, y)
    full = build(loss_type)(zs[4:], zt[4:], y[4:])
    torch.testing.assert_close(out, full)


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(loss_type, dtype):
    loss = build(loss_type)
    zs, zt, y = batch(scale=8.0)
    zs_half = zs.detach().to(dtype).requires_grad_()
    out = loss(zs_half, zt.to(dtype), y)
    ref = loss(zs_half.detach().float(), zt.to(dtype).float(), y)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    out.backward()
    assert torch.isfinite(zs_half.grad.float()).all()


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
@pytest.mark.parametrize('calibrate', ['wrong', 'margin', 'none'])
def test_extreme_teachers_give_finite_values(loss_type, calibrate):
    # One-hot teachers (p_y == 1, or all mass on a wrong class) and p_y near
    # 1, in half precision: no NaN or inf, finite gradient.
    n, c = 6, 10
    zt = torch.zeros(n, c)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    zt[0, 0] = 1e4  # one-hot on the label
    zt[1, 7] = 1e4  # one-hot on a wrong class
    zt[2, 2] = 30.0  # p_y = 1 - O(1e-12) at tau 1
    zt[3, 3] = 60000.0  # near float16's max
    zt[4] = -60000.0
    zt[4, 4] = 0.0
    for dtype in (torch.float32, torch.float16):
        zs = (torch.randn(n, c) * 3).to(dtype).requires_grad_()
        loss = build(loss_type, tau=1.0, calibrate=calibrate)
        out = loss(zs, zt.to(dtype), y)
        out.backward()
        assert torch.isfinite(out), (dtype, out)
        assert torch.isfinite(zs.grad.float()).all()


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_empty_batch_and_all_ignored_give_zero_with_gradient(loss_type):
    loss = build(loss_type, ignore_index=-1)
    zs = torch.randn(0, 10, requires_grad=True)
    out = loss(zs, torch.randn(0, 10), torch.zeros(0, dtype=torch.long))
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    zs, zt, y = batch()
    out = loss(zs, zt, torch.full_like(y, -1))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(zs.grad, torch.zeros_like(zs))


@pytest.mark.parametrize('loss_type', LOSS_TYPES)
def test_nan_inputs_never_become_a_finite_loss(loss_type):
    loss = build(loss_type)
    zs, zt, y = batch()
    zt_nan = zt.clone()
    zt_nan[3, 2] = float('nan')
    assert torch.isnan(loss(zs, zt_nan, y))
    zs_nan = zs.detach().clone()
    zs_nan[0, 0] = float('nan')
    assert torch.isnan(loss(zs_nan, zt, y))


def test_training_sums_calibration_ratio_and_scale():
    loss = build('LoCaLoss', tau=1.0, alpha=0.9)
    loss.attach_runner(train_loop_by_epoch=True)
    zs, zt, y = batch(n=32)
    loss.train()
    loss(zs, zt, y)
    out = LF.loca_kd_loss(zs, zt, y, 1.0, 0.9, 'wrong')
    n_cal = int(out.calibrated.sum())
    assert 0 < n_cal < 32
    summary = LF.calibration_summary(loss.take_calibration_totals())
    assert summary['loca_ratio'] == pytest.approx(n_cal / 32)
    mean_s = out.scale[out.calibrated].mean().item()
    assert summary['loca_scale'] == pytest.approx(mean_s)
    assert mean_s < 0.9  # wrong samples: s = alpha / (1 - p_y + p_k) < alpha


def warmed_up(loss, zs, zt, y, epoch=0, iteration=0):
    loss.set_training_progress(epoch, iteration)  # as LoCaLossHook does
    return loss(zs, zt, y)


def test_warmup_epochs_ramp_with_the_epoch():
    loss = build('DKDLoCaLoss', warmup_epochs=20, calibrate='none')
    loss.attach_runner(train_loop_by_epoch=True)  # as LoCaLossHook does
    zs, zt, y = batch()
    full = LF.dkd_loss(zs, zt, y, calibrate='none').loss
    # 0-based epochs: the first is weighted 1/20, the tenth 10/20.
    for epoch, factor in ((0, 1 / 20), (9, 1 / 2), (40, 1.0)):
        torch.testing.assert_close(
            warmed_up(loss, zs, zt, y, epoch=epoch, iteration=999),
            full * factor)


def test_warmup_iters_ramp_with_the_iteration():
    loss = build('DKDLoCaLoss', warmup_iters=8, calibrate='none')
    zs, zt, y = batch()
    full = LF.dkd_loss(zs, zt, y, calibrate='none').loss
    for it, factor in ((0, 1 / 8), (3, 4 / 8), (7, 1.0), (100, 1.0)):
        torch.testing.assert_close(
            warmed_up(loss, zs, zt, y, epoch=5, iteration=it), full * factor)


def test_warmup_without_progress_is_an_error_naming_the_hook():
    loss = build('DKDLoCaLoss', warmup_iters=5)
    with pytest.raises(RuntimeError, match='LoCaLossHook.*'
                       r'set_training_progress\(epoch, iteration\)'):
        loss(*batch())


def test_warmup_compiles_as_one_graph_without_recompiling():
    """The progress is a tensor the loss holds: forward looks nothing up
    (MessageHub's lock broke fullgraph), and a new iteration is no new
    graph."""
    torch._dynamo.reset()
    loss = build('DKDLoCaLoss', warmup_iters=4, calibrate='margin')
    loss.train()
    compiled = torch.compile(loss, fullgraph=True, dynamic=False)
    zs, zt, y = batch()
    full = LF.dkd_loss(zs, zt, y, calibrate='margin').loss
    counter = torch._dynamo.utils.counters
    counter.clear()
    for it in range(6):
        loss.set_training_progress(0, it)
        torch.testing.assert_close(compiled(zs, zt, y),
                                   full * min((it + 1) / 4, 1.0))
    assert counter['stats']['unique_graphs'] == 1


def test_old_argument_names_are_refused_naming_the_new_ones():
    for old, new in (('beta', 'nckd_weight'), ('loca_alpha', 'alpha')):
        with pytest.raises(TypeError, match=f'{old} is the name of '
                           f'loca_mm 0.1; it is {new} now'):
            build('DKDLoCaLoss', **{old: 0.5})


def test_old_name_on_the_command_line_cannot_move_a_weight():
    """--cfg-options ...loss_distill.beta=6.0 on a shipped DKD+LoCa config
    once built tckd_weight=0.9 (LoCa's alpha) silently."""
    cfg = Config.fromfile(
        'configs/distill/cifar100/'
        'dkdloca_logits_resnet56_resnet20_1xb64_cifar100.py')
    cfg.merge_from_dict(
        {'model.distiller.distill_losses.loss_distill.beta': 6.0})
    loss_cfg = cfg.model.distiller.distill_losses.loss_distill
    with pytest.raises(TypeError, match='it is nckd_weight now'):
        build(loss_cfg.pop('type'), **loss_cfg)


def test_dkd_loca_loss_alpha_of_one_points_at_tckd_weight():
    # alpha=1.0 was DKD's usual TCKD weight; it is now LoCa's alpha.
    with pytest.raises(ValueError, match='tckd_weight'):
        build('DKDLoCaLoss', alpha=1.0)
