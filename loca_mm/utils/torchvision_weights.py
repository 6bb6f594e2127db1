"""torchvision's ImageNet ResNet weights under mmpretrain's ResNet keys.

mmpretrain's ``ResNet`` (``style='pytorch'``: the stride on the 3x3
convolution of a bottleneck, as torchvision's) with ``GlobalAveragePooling``
and a ``LinearClsHead`` computes torchvision's ResNet with the same module
names below the top level: ``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0`` ... live under ``backbone.``, and ``fc`` is the
head's ``head.fc``. Both read RGB images normalised with the ImageNet mean
and std, so converted weights give torchvision's logits.
"""
from collections import OrderedDict
from typing import Mapping

from torch import Tensor


def torchvision_resnet_to_mmpretrain(
        state_dict: Mapping[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """Rename a torchvision ResNet state dict to an mmpretrain
    ``ImageClassifier``'s keys.

    The result still has to be loaded strictly into the target model, which
    checks every key and shape.

    Raises:
        ValueError: ``state_dict`` has no ``fc.weight`` and ``conv1.weight``
            (not a torchvision ResNet state dict).
    """
    for key in ('conv1.weight', 'fc.weight'):
        if key not in state_dict:
            raise ValueError(
                f'not a torchvision ResNet state dict: no {key!r} among '
                f'{len(state_dict)} keys (first: {list(state_dict)[:3]})')
    return OrderedDict(
        ('head.' + key if key.startswith('fc.') else 'backbone.' + key, value)
        for key, value in state_dict.items())
