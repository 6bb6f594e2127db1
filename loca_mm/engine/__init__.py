# The OpenMMLab side is set up whole, repairs first, whichever of its modules
# a process imports first.
from .. import registry  # noqa: F401,I001
from . import hooks  # noqa: F401  (registers hooks)
from . import optimizers  # noqa: F401  (registers optimizer wrappers)
from . import runner  # noqa: F401  (registers loops)
