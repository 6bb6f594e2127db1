"""Sets up loca_mm's OpenMMLab side when a process imported loca_mm first.

``import loca_mm`` (and so ``import loca_mm.functional``) must not import the
OpenMMLab stack, yet a script that imports loca_mm and then mmrazor, or loads
a config whose ``custom_imports`` names loca_mm after loca_mm was imported
(then a no-op), must find loca_mm's modules registered and the stack
repaired, as it would with the opposite order. So where the stack is
installed but not yet imported, ``import loca_mm`` adds this finder to
``sys.meta_path``. It finds nothing itself; it watches for the first import
of torchvision or of an OpenMMLab package:

* before that package runs, it makes the repairs that must come first and
  need only torch (torchvision's operator schemas; for an OpenMMLab package
  also the names mmrazor's quantization tables import);
* after the first OpenMMLab package has run whole (with the packages it
  imports itself), it imports :mod:`loca_mm.registry`, which repairs the
  rest and registers everything, and leaves ``sys.meta_path``.
"""
import importlib.abc
import importlib.util
import sys

STACK = ('mmengine', 'mmcv', 'mmpretrain', 'mmrazor')


class _RunThenSetUp(importlib.abc.Loader):
    """Runs an OpenMMLab package with its own loader, then loca_mm's side."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # The package keeps its own loader (importlib.resources reads it).
        module.__spec__.loader = module.__loader__ = self.loader
        self.loader.exec_module(module)
        import loca_mm.registry  # noqa: F401


class SetUpOnStackImport(importlib.abc.MetaPathFinder):
    """The finder described in the module docstring."""

    def __init__(self):
        self.busy = False  # the repairs look for torchvision themselves

    def find_spec(self, fullname, path=None, target=None):
        if self.busy or (fullname != 'torchvision' and fullname not in STACK):
            return None
        self.busy = True
        try:
            from loca_mm import compat
            compat.fix_torchvision_ops_schema()
            if fullname == 'torchvision':
                return None  # the usual finders load it
            compat.fix_mmrazor_quantization_imports()
        finally:
            self.busy = False
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RunThenSetUp(spec.loader)
        return spec


def stack_installed() -> bool:
    """Whether mmengine, mmpretrain and mmrazor can be imported."""
    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ('mmengine', 'mmpretrain', 'mmrazor'))
    except (ImportError, ValueError):  # a package that refuses to be found
        return False


def install() -> None:
    """Add the finder, once, where it has something to set up."""
    installed = any(
        isinstance(finder, SetUpOnStackImport) for finder in sys.meta_path)
    if not installed and stack_installed():
        sys.meta_path.insert(0, SetUpOnStackImport())
