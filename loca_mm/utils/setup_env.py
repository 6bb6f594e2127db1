"""What mmengine calls to build modules of the ``loca_mm`` scope."""
import datetime

from mmengine.registry import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register loca_mm's modules (and mmpretrain's) in their registries.

    mmengine calls this for the ``loca_mm`` scope: ``mmengine.hub.get_model``
    before it builds a model given as ``dict(cfg_path='loca_mm::...')`` (what
    mmrazor does with such a dict), and each ``loca_mm`` registry node before
    its first look-up. Importing :mod:`loca_mm.registry` (which importing this
    package does) registers everything; this only sets the default scope.

    Args:
        init_default_scope (bool): also make ``loca_mm`` the default scope,
            as the OpenMMLab packages' functions of this name do. Its
            registry nodes are children of mmpretrain's, so names resolve
            as under loca_mm's configs' ``default_scope='mmpretrain'``.
    """
    import loca_mm.registry  # noqa: F401
    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None or current.scope_name != 'loca_mm':
        DefaultScope.get_instance(
            f'loca_mm-{datetime.datetime.now()}', scope_name='loca_mm')
