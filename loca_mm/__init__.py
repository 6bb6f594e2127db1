"""loca_mm: LoCa (Logit Calibration, ECAI 2024) distillation for OpenMMLab.

Importing the package (directly, or through ``custom_imports`` in a config)
first applies the compatibility fixes in :mod:`loca_mm.compat`, then
registers the losses and algorithms in ``mmrazor.registry.MODELS``, the
backbones in ``mmpretrain.registry.MODELS`` and the hooks in
``mmengine``/``mmrazor`` hook registries, and makes ``loca_mm::`` a config
scope (:mod:`loca_mm.registry`).
"""
from . import compat

compat.apply()

from . import datasets, engine, models  # noqa: E402,F401  (registers modules)
from . import registry  # noqa: E402,F401  (the loca_mm:: config scope)
from .version import __version__  # noqa: E402

__all__ = ['__version__']
