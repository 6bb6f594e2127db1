# The OpenMMLab side is set up whole, repairs first, whichever of its modules
# a process imports first.
from .. import registry  # noqa: F401,I001
from . import algorithms, backbones, losses  # noqa: F401  (registers modules)
