"""VGG-BN nets (vgg8 ... vgg19) of the CIFAR-100 KD zoo."""
from typing import Optional, Tuple

import torch.nn.functional as F
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from .init import ZOO_CONV_INIT


@MODELS.register_module()
class CifarVGG(BaseBackbone):
    """VGG with batch norm and without the fully connected layers.

    Five stages of 3x3 conv-BN-ReLU (64, 128, 256, 512, 512 channels); a 2x2
    max-pool precedes stages 1 to 3 only, so a 32x32 input gives a 4x4 map
    (the zoo pools once less than ImageNet VGG). Stage ``i`` is the module
    ``block{i}``, a Sequential of ``[conv, bn, relu] * n``, whose indices
    match the zoo's state-dict keys. Returns a one-tuple with the
    ``(N, 512, H / 8, W / 8)`` map.

    Args:
        depth (int): 8, 11, 13, 16 or 19.
        init_cfg (dict, optional): initialisation; the default
            is the zoo's (He-normal, fan-out convs with zero bias).
    """

    # convs per stage; depth counts them plus the three FC layers of VGG
    arch_settings = {
        8: (1, 1, 1, 1, 1),
        11: (1, 1, 2, 2, 2),
        13: (2, 2, 2, 2, 2),
        16: (2, 2, 3, 3, 3),
        19: (2, 2, 4, 4, 4),
    }
    stage_channels = (64, 128, 256, 512, 512)
    pooled_stages = (1, 2, 3)

    def __init__(self,
                 depth: int,
                 init_cfg: Optional[dict] = ZOO_CONV_INIT) -> None:
        super().__init__(init_cfg)
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for CifarVGG, expected '
                           f'one of {tuple(self.arch_settings)}')
        in_channels = 3
        for i, (num_convs, channels) in enumerate(
                zip(self.arch_settings[depth], self.stage_channels)):
            layers = []
            for _ in range(num_convs):
                layers += [
                    nn.Conv2d(in_channels, channels, 3, padding=1),
                    nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True)
                ]
                in_channels = channels
            self.add_module(f'block{i}', nn.Sequential(*layers))

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        for i in range(len(self.stage_channels)):
            if i in self.pooled_stages:
                x = F.max_pool2d(x, 2)
            x = getattr(self, f'block{i}')(x)
        return (x, )
