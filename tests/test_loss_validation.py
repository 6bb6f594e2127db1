"""Every argument of every registered loss is checked at construction: a
wrong type or value is refused with a message naming the loss, the
parameter and the value."""
import math

import numpy as np
import pytest

from loca_mm.models.losses import DKDLoCaLoss, LoCaLoss

NAN, INF = float('nan'), float('inf')
SHARED = {
    # parameter: [(bad value, error type), ...]
    'tau': [('4', TypeError), (None, TypeError), (True, TypeError),
            (0.0, ValueError), (-1.0, ValueError), (INF, ValueError),
            (NAN, ValueError)],
    'alpha': [('0.9', TypeError), (None, None), (NAN, ValueError),
              (0.0, ValueError), (1.0, ValueError), (1.5, ValueError),
              (INF, ValueError)],
    'loss_weight': [('1.0', TypeError), (NAN, ValueError), (-0.5, ValueError),
                    (INF, ValueError), (False, TypeError)],
    'calibrate': [(1, TypeError), (None, TypeError), ('all', ValueError),
                  ('Wrong', ValueError)],
    'ignore_index': [('-100', TypeError), (-100.0, TypeError),
                     (True, TypeError)],
    'check_labels': [(1, TypeError), (0, TypeError), ('False', TypeError),
                     (None, TypeError)],
    'log_stats': [(1, TypeError), ('True', TypeError), (None, TypeError)],
}
DKD_ONLY = {
    'tckd_weight': [('1.0', TypeError), (NAN, ValueError), (-1.0, ValueError),
                    (INF, ValueError)],
    'nckd_weight': [('8', TypeError), (-8, ValueError), (NAN, ValueError),
                    (INF, ValueError), (True, TypeError)],
    'warmup_epochs': [(1.5, TypeError), (5.0, TypeError), ('5', TypeError),
                      (-1, ValueError), (True, TypeError)],
    'warmup_iters': [(10.5, TypeError), ('100', TypeError), (-3, ValueError)],
}
CASES = [(cls, name, value, error)
         for cls in (LoCaLoss, DKDLoCaLoss)
         for name, bad in SHARED.items()
         for value, error in bad
         # DKD's alpha is optional (None: 0.9); LoCaLoss's is not.
         if not (value is None and name == 'alpha')] + [
             (LoCaLoss, 'alpha', None, TypeError)] + [
                 (DKDLoCaLoss, name, value, error)
                 for name, bad in DKD_ONLY.items() for value, error in bad]


@pytest.mark.parametrize(
    'cls,name,value,error', CASES,
    ids=[f'{c.__name__}-{n}={v!r}' for c, n, v, _ in CASES])
def test_bad_argument_is_refused_naming_it(cls, name, value, error):
    with pytest.raises(error) as info:
        cls(**{name: value})
    message = str(info.value)
    assert f'{cls.__name__}: {name}=' in message
    shown = repr(float(value)) if isinstance(value, float) else repr(value)
    assert shown in message


@pytest.mark.parametrize('cls', [LoCaLoss, DKDLoCaLoss])
def test_good_arguments_are_kept_in_their_types(cls):
    loss = cls(tau=2, alpha=np.float32(0.5), loss_weight=0,
               ignore_index=np.int64(-100), calibrate='margin',
               check_labels=False, log_stats=False)
    assert (loss.tau, loss.loss_weight, loss.ignore_index) == (2.0, 0.0, -100)
    assert type(loss.tau) is float and type(loss.ignore_index) is int
    assert loss.alpha == pytest.approx(0.5) and type(loss.alpha) is float
    assert cls(ignore_index=None).ignore_index is None


def test_dkd_weights_and_warmups():
    loss = DKDLoCaLoss(tckd_weight=0, nckd_weight=2, warmup_iters=100)
    assert (loss.tckd_weight, loss.nckd_weight) == (0.0, 2.0)
    assert loss.warmup_iters == 100 and loss.warmup_epochs == 0
    with pytest.raises(ValueError, match='warmup_epochs=5 and '
                       'warmup_iters=100: set at most one'):
        DKDLoCaLoss(warmup_epochs=5, warmup_iters=100)


def test_dkd_alpha_of_one_names_tckd_weight():
    with pytest.raises(ValueError, match=r'alpha=1\.0 .*tckd_weight'):
        DKDLoCaLoss(alpha=1.0)
