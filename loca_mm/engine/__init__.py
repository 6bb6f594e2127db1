from . import hooks  # noqa: F401  (registers hooks)
from . import runner  # noqa: F401  (registers loops)
