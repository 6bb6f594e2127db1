from .mobilenet_v1 import MobileNetV1  # noqa: F401
from .small_convnet import SmallConvNet  # noqa: F401
from . import cifar  # noqa: F401  (registers the CIFAR-100 zoo backbones)
