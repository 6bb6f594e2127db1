from . import hooks  # noqa: F401  (registers hooks)
from . import optimizers  # noqa: F401  (registers optimizer wrappers)
from . import runner  # noqa: F401  (registers loops)
