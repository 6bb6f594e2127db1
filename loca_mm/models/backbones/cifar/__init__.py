"""Backbones of the CIFAR-100 knowledge-distillation model zoo of CRD /
RepDistiller / mdistiller, with the zoo's layouts and parameter counts.

Their module names follow the zoo's state-dict keys wherever those are valid
Python names, so converting a released checkpoint
(:mod:`loca_mm.models.converters.repdistiller`) is mostly a prefix rename.
The zoo's ResNet18/ResNet50 are mmpretrain's ``ResNet_CIFAR`` and need no
class here.
"""
from .mobilenet_v2 import CifarMobileNetV2
from .resnet import CifarResNet
from .shufflenet_v1 import CifarShuffleNetV1
from .shufflenet_v2 import CifarShuffleNetV2
from .vgg import CifarVGG
from .wrn import CifarWideResNet

__all__ = [
    'CifarResNet', 'CifarWideResNet', 'CifarVGG', 'CifarMobileNetV2',
    'CifarShuffleNetV1', 'CifarShuffleNetV2'
]
