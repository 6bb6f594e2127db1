"""loca_mm: LoCa (Logit Calibration, ECAI 2024) distillation for OpenMMLab.

Importing ``loca_mm`` imports nothing of OpenMMLab, so that
:mod:`loca_mm.functional` (torch only) and :mod:`loca_mm.integrations`
(Hugging Face) serve without mmengine, mmcv, mmpretrain or mmrazor.

loca_mm's OpenMMLab side is :mod:`loca_mm.registry`: the compatibility
repairs of :mod:`loca_mm.compat`, then every registration (losses and
algorithms in ``mmrazor.registry.MODELS``, backbones and datasets in
mmpretrain's registries, hooks, loops and optimizer wrappers in mmengine's),
and the ``loca_mm::`` config scope. It is set up, once, by whichever comes
first:

* ``import loca_mm`` when mmengine is imported already: a config's
  ``custom_imports=dict(imports=['loca_mm'])``, the tools, any script that
  imports an OpenMMLab package first;
* the first import of an OpenMMLab package after loca_mm, where the stack is
  installed: a script that starts with ``import loca_mm`` (or with
  :mod:`loca_mm.functional`, after which ``custom_imports`` finds loca_mm
  imported already) and then imports mmrazor, mmpretrain or mmengine, or
  :mod:`loca_mm.models`, :mod:`loca_mm.utils`, ... which import them
  (:mod:`loca_mm._stack_import_hook`);
* mmengine building what the ``loca_mm`` scope names (it imports
  ``loca_mm.registry`` or ``loca_mm.utils`` for it);
* :func:`register_all_modules`, as in the OpenMMLab packages.
"""
import sys

from .version import __version__

__all__ = ['__version__', 'register_all_modules']


def register_all_modules(init_default_scope: bool = False) -> None:
    """Set up loca_mm's OpenMMLab side (:mod:`loca_mm.registry`).

    Args:
        init_default_scope (bool): also make ``loca_mm`` the default scope
            (see :func:`loca_mm.utils.register_all_modules`). Off by default:
            loca_mm's losses and algorithms live in mmrazor's registry, which
            a ``loca_mm`` default scope does not search for bare names.
    """
    from .utils.setup_env import register_all_modules as register
    register(init_default_scope)


if 'mmengine' in sys.modules:  # the OpenMMLab stack is in use
    from . import registry  # noqa: F401
else:  # set it up if and when the stack is imported
    from . import _stack_import_hook
    _stack_import_hook.install()
