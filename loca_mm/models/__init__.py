from . import algorithms, backbones, losses  # noqa: F401  (registers modules)
