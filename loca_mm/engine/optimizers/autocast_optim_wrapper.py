"""Mixed precision without a GPU: bfloat16 autocast on the CPU."""
from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` whose forward (``optim_context``) runs under
    ``torch.autocast``, without a loss scale.

    mmengine's ``AmpOptimWrapper`` needs a GPU (it asserts one, and its
    ``GradScaler`` is CUDA's). bfloat16 has float32's exponent range, so its
    gradients need no scaling and a plain wrapper is enough; this is what
    ``tools/train.py --amp`` uses on a machine without CUDA.

    Args:
        device_type (str): the autocast device. Defaults to ``'cpu'``.
        dtype (str or torch.dtype): ``'bfloat16'`` (or ``torch.bfloat16``).
            float16 needs a loss scale, which this wrapper does not apply.
        **kwargs: arguments of ``OptimWrapper``.
    """

    def __init__(self,
                 device_type: str = 'cpu',
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs) -> None:
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if dtype != torch.bfloat16:
            raise ValueError(
                f'AutocastOptimWrapper: dtype={dtype!r}: only bfloat16 '
                'trains without a loss scale; for float16 use mmengine\'s '
                'AmpOptimWrapper on a GPU')
        super().__init__(**kwargs)
        self.device_type = device_type
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast(
                self.device_type, dtype=self.cast_dtype):
            yield
