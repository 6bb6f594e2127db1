"""What ``--amp`` means on the machine at hand."""
import torch
from mmengine.config import ConfigDict


def amp_optim_wrapper(optim_wrapper: dict) -> ConfigDict:
    """The optimizer wrapper settings of ``--amp``.

    With CUDA: mmengine's ``AmpOptimWrapper``, autocast to the config's
    ``dtype`` (float16 by default) with a dynamic loss scale unless the
    config sets one. Without CUDA: CPU bfloat16 autocast
    (:class:`loca_mm.engine.optimizers.AutocastOptimWrapper`); a config that
    asks for another dtype is refused, naming it.

    Args:
        optim_wrapper (dict): the config's ``optim_wrapper`` (type
            ``OptimWrapper`` or unset).

    Returns:
        ConfigDict: the new ``optim_wrapper``.
    """
    wrapper = ConfigDict(optim_wrapper)
    if torch.cuda.is_available():
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
        return wrapper
    dtype = wrapper.get('dtype', 'bfloat16')
    if dtype not in ('bfloat16', torch.bfloat16):
        raise ValueError(
            f'--amp without CUDA trains in bfloat16 autocast on the CPU; '
            f'optim_wrapper.dtype={dtype!r} needs a GPU')
    wrapper.pop('loss_scale', None)  # bfloat16 needs no loss scale
    wrapper.update(type='AutocastOptimWrapper', device_type='cpu',
                   dtype='bfloat16')
    return wrapper
