"""Independent float64 statements of LoCa, KD and DKD for the tests.

Written from the paper's definitions, row by row, with the calibrated
distribution materialised, so they share nothing with
``loca_mm.functional`` (which never builds ``q`` inside the losses).
"""
import numpy as np


def softmax64(logits, tau):
    z = np.asarray(logits, dtype=np.float64) / tau
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def calibrate_row(p, y, alpha, mode):
    """q, s and whether the row was changed, for one probability row."""
    p = np.asarray(p, dtype=np.float64)
    non_target = np.delete(p, y)
    p_y, p_k = p[y], non_target.max()
    s = alpha / (1.0 - p_y + p_k)
    if mode == 'wrong':
        changed = p_k >= p_y
    elif mode == 'margin':
        changed = s < 1.0
    else:
        changed = False
    if not changed:
        return p.copy(), 1.0, False
    q = s * p
    q[y] = 1.0 - s * (1.0 - p_y)
    return q, s, True


def kl(q, s):
    q, s = np.asarray(q), np.asarray(s)
    keep = q > 0
    return float(np.sum(q[keep] * (np.log(q[keep]) - np.log(s[keep]))))


def loca_kd_reference(logits_s, logits_t, labels, tau, alpha, mode,
                      ignore_index=None):
    """tau^2 * mean over kept rows of KL(q || softmax(z_s / tau))."""
    c = np.shape(logits_s)[-1]
    zs = np.asarray(logits_s, dtype=np.float64).reshape(-1, c)
    zt = np.asarray(logits_t, dtype=np.float64).reshape(-1, c)
    ys = np.asarray(labels).reshape(-1)
    total, count = 0.0, 0
    for row_s, row_t, y in zip(zs, zt, ys):
        if ignore_index is not None and y == ignore_index:
            continue
        q, _, _ = calibrate_row(softmax64(row_t, tau), int(y), alpha, mode)
        total += kl(q, softmax64(row_s, tau))
        count += 1
    return tau**2 * total / max(count, 1)


def dkd_reference(logits_s, logits_t, labels, tau, tckd_weight, nckd_weight,
                  alpha, mode, ignore_index=None):
    """tau^2 * mean(tckd_weight * TCKD + nckd_weight * NCKD) on the
    teacher calibrated with LoCa's alpha."""
    c = np.shape(logits_s)[-1]
    zs = np.asarray(logits_s, dtype=np.float64).reshape(-1, c)
    zt = np.asarray(logits_t, dtype=np.float64).reshape(-1, c)
    ys = np.asarray(labels).reshape(-1)
    total, count = 0.0, 0
    for row_s, row_t, y in zip(zs, zt, ys):
        if ignore_index is not None and y == ignore_index:
            continue
        y = int(y)
        q, _, _ = calibrate_row(
            softmax64(row_t, tau), y, alpha, mode)
        s = softmax64(row_s, tau)
        q_nt, s_nt = np.delete(q, y), np.delete(s, y)
        # 1 - p_y as the sum of the others: 1.0 - s[y] is 0 for s[y] near 1.
        tckd = kl([q[y], q_nt.sum()], [s[y], s_nt.sum()])
        nckd = kl(q_nt / q_nt.sum(), s_nt / s_nt.sum())
        total += tckd_weight * tckd + nckd_weight * nckd
        count += 1
    return tau**2 * total / max(count, 1)
