"""sparse_loca_kd_loss: LoCa-KD towards a cached top-k teacher."""
import pytest
import torch

from loca_mm import functional as LF


def batch(rows=23, classes=13, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    preds_S = (2 * torch.randn(
        rows, classes, generator=generator, dtype=dtype)).requires_grad_()
    preds_T = 3 * torch.randn(rows, classes, generator=generator, dtype=dtype)
    labels = torch.randint(0, classes, (rows, ), generator=generator)
    labels[::5] = -100
    return preds_S, preds_T, labels


def cache(preds_T, labels, k, tau):
    """What tools/llm/cache_teacher.py stores for each row."""
    logits, ids = preds_T.topk(k, -1)
    label_logit = preds_T.gather(-1, labels.clamp_min(0)[:, None])[:, 0]
    return ids, logits, label_logit, (preds_T / tau).logsumexp(-1)


def reference_loss(preds_S, preds_T, labels, k, tau, alpha, mode):
    """The rule written out row by row in float64 from the full teacher."""
    p_t = torch.softmax(preds_T.double() / tau, -1)
    log_p_s = torch.log_softmax(preds_S.double() / tau, -1)
    terms = []
    for row, label in enumerate(labels.tolist()):
        if label == -100:
            continue
        p = p_t[row]
        p_y = p[label]
        p_k = max(p[c] for c in range(len(p)) if c != label)
        scale = alpha / (1 - p_y + p_k)
        if mode == 'none' or (mode == 'wrong' and p_k < p_y) or scale >= 1:
            scale = 1.0
        kept = set(preds_T[row].topk(k).indices.tolist()) | {label}
        rest = [c for c in range(len(p)) if c not in kept]
        q = {c: (1 - scale * (1 - p_y)) if c == label else scale * p[c]
             for c in kept}
        student = {c: log_p_s[row, c] for c in kept}
        if rest:
            q['rest'] = scale * p[rest].sum()
            student['rest'] = log_p_s[row, rest].logsumexp(0)
        terms.append(sum(q[c] * (q[c].log() - student[c]) for c in q
                         if q[c] > 0))
    return tau**2 * torch.stack(terms).mean()


@pytest.mark.parametrize('mode', ['wrong', 'margin', 'none'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_full_vocabulary_equals_online(mode, dtype):
    preds_S, preds_T, labels = batch(dtype=dtype)
    kwargs = dict(tau=2.0, alpha=0.8, calibrate=mode, ignore_index=-100)
    online = LF.loca_kd_loss(preds_S, preds_T, labels, **kwargs)
    grad_online, = torch.autograd.grad(online.loss, preds_S)
    offline = LF.sparse_loca_kd_loss(
        preds_S, *cache(preds_T, labels, preds_T.shape[-1], 2.0), labels,
        **kwargs)
    grad, = torch.autograd.grad(offline.loss, preds_S)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else {}
    torch.testing.assert_close(offline.loss, online.loss, **tol)
    torch.testing.assert_close(grad, grad_online, **tol)
    assert torch.equal(offline.calibrated, online.calibrated)
    torch.testing.assert_close(offline.scale, online.scale, **tol)
    if mode != 'none':
        assert offline.calibrated.any()


@pytest.mark.parametrize('mode', ['wrong', 'margin', 'none'])
@pytest.mark.parametrize('k', [2, 3, 8])
def test_top_k_equals_float64_formula(mode, k):
    preds_S, preds_T, labels = batch()
    offline = LF.sparse_loca_kd_loss(
        preds_S.float(), *(t.float() if t.is_floating_point() else t
                           for t in cache(preds_T, labels, k, 3.0)),
        labels, tau=3.0, alpha=0.8, calibrate=mode, ignore_index=-100)
    expected = reference_loss(preds_S, preds_T, labels, k, 3.0, 0.8, mode)
    torch.testing.assert_close(offline.loss.double(), expected, rtol=1e-5,
                               atol=1e-6)
    # Rows whose label is outside the top-k are in the batch, and so are
    # rows where it is inside.
    top = preds_T.topk(k, -1).indices
    inside = (top == labels[:, None]).any(-1)
    assert inside[labels >= 0].any() and (~inside[labels >= 0]).any()
    grad, = torch.autograd.grad(offline.loss, preds_S)
    grad_ref, = torch.autograd.grad(
        reference_loss(preds_S, preds_T, labels, k, 3.0, 0.8, mode), preds_S)
    torch.testing.assert_close(grad.double(), grad_ref, rtol=1e-4, atol=1e-6)


def test_the_largest_non_target_is_exact_with_the_label_on_top():
    # The label is the teacher's top-1 and k = 2: p_k is the second class,
    # and 'margin' calibrates with s = alpha / (1 - p_y + p_2) exactly.
    preds_T = torch.tensor([[4.0, 3.5, 0.0, 0.0, 0.0]])
    preds_S = torch.zeros(1, 5, requires_grad=True)
    labels = torch.tensor([0])
    result = LF.sparse_loca_kd_loss(
        preds_S, *cache(preds_T, labels, 2, 1.0), labels, tau=1.0,
        alpha=0.5, calibrate='margin')
    p = torch.softmax(preds_T[0], -1)
    torch.testing.assert_close(result.scale[0], 0.5 / (1 - p[0] + p[1]))


def test_refuses_bad_caches():
    preds_S, preds_T, labels = batch()
    ids, logits, label_logit, lse = cache(preds_T, labels, 3, 1.0)
    with pytest.raises(ValueError, match='k >= 2'):
        LF.sparse_loca_kd_loss(preds_S, ids[:, :1], logits[:, :1],
                               label_logit, lse, labels, ignore_index=-100)
    with pytest.raises(ValueError, match='teacher_logsumexp'):
        LF.sparse_loca_kd_loss(preds_S, ids, logits, label_logit, lse[:-1],
                               labels, ignore_index=-100)
    with pytest.raises(ValueError, match='teacher_ids'):
        LF.sparse_loca_kd_loss(preds_S, ids, logits[:, :2], label_logit, lse,
                               labels, ignore_index=-100)
