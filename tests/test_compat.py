"""The compatibility fixes: each repairs what it names, only on the versions
that have the break, and is idempotent."""
import subprocess
import sys

import numpy as np
import pytest
import torch


@pytest.mark.slow
def test_stack_imports_after_loca_mm_in_a_fresh_interpreter():
    # mmrazor.models fails on torch 2.x and torchvision aborts next to the
    # CPU torch wheel unless loca_mm's fixes ran first; loca_mm imports
    # none of them itself, and makes the fixes when the stack is imported.
    code = ('import loca_mm, torchvision.transforms, mmpretrain.models, '
            'mmrazor.models; from mmrazor.registry import MODELS; '
            "assert MODELS.get('LoCaLoss') is not None; print('ok')")
    out = subprocess.run([sys.executable, '-W', 'error::UserWarning', '-c',
                          code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == 'ok'


def test_apply_is_idempotent():
    from loca_mm import compat
    compat.apply()
    second = compat.apply()
    assert second == dict.fromkeys(second, False)


def test_checkpoint_repairs_only_where_torch_loads_weights_only():
    # Before torch 2.6, torch.load unpickles anything by default: nothing
    # to allow-list, no weights-only advice to replace. The version found
    # is what decides (here torch 2.5.1 as reported by torch).
    code = """
import torch
from torch.torch_version import TorchVersion
found = torch.__version__
torch.__version__ = TorchVersion('2.5.1')
from loca_mm import compat
from mmengine.runner import CheckpointLoader
older = compat.apply()
scheme = CheckpointLoader._schemes['']
torch.__version__ = found
current = compat.apply()
print(older['checkpoint_safe_globals'], older['damaged_checkpoint_errors'],
      scheme.__module__, current['checkpoint_safe_globals'],
      current['damaged_checkpoint_errors'])
"""
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        'False', 'False', 'mmengine.runner.checkpoint', 'True', 'True'
    ]


def test_mmengine_checkpoint_contents_load_with_default_weights_only(
        tmp_path):
    import loca_mm  # noqa: F401
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(0.5)
    path = tmp_path / 'ckpt.pth'
    torch.save(
        {
            'meta': {
                'seed': np.int64(3),
                'lr': np.float32(0.1),
                'hist': np.arange(4),
                'dtype': np.dtype('float64')
            },
            'message_hub': {
                'log_scalars': {
                    'train/loss': buffer
                }
            },
            'state_dict': {
                'w': torch.ones(2)
            }
        }, path)
    loaded = torch.load(path)  # weights_only=True is torch's default
    assert loaded['meta']['seed'] == 3
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.5
    assert np.array_equal(loaded['meta']['hist'], np.arange(4))


def test_weights_only_still_refuses_arbitrary_callables(tmp_path):
    import loca_mm  # noqa: F401

    class Payload:

        def __reduce__(self):
            return (print, ('executed', ))

    path = tmp_path / 'evil.pth'
    torch.save({'x': Payload()}, path)
    try:
        torch.load(path)
    except Exception as error:  # noqa: BLE001 (any refusal is fine)
        assert 'print' in str(error) or 'Unsupported' in str(error)
    else:
        raise AssertionError('a pickled call of print was loaded')


def test_getattr_fetches_only_history_buffer_methods(tmp_path):
    import loca_mm  # noqa: F401

    # torch keeps the allow-list in a set: a plain getattr entry beside the
    # restricted one under the same name would win in some processes.
    assert getattr not in torch.serialization.get_safe_globals()

    class Fetch:

        def __reduce__(self):
            return (getattr, (np.ndarray, 'tofile'))

    path = tmp_path / 'fetch.pth'
    torch.save({'x': Fetch()}, path)
    try:
        torch.load(path)
    except Exception as error:  # noqa: BLE001 (any refusal is fine)
        assert 'tofile' in str(error)
    else:
        raise AssertionError('getattr(np.ndarray, "tofile") was loaded')
