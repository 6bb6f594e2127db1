"""Wide ResNets (wrn_16_1 ... wrn_40_2) of the CIFAR-100 KD zoo."""
from typing import Optional, Tuple

import torch.nn.functional as F
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from .init import ZOO_CONV_INIT


class PreActBlock(nn.Module):
    """Pre-activation basic block of Zagoruyko & Komodakis (2016).

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        stride (int): stride of the first 3x3 conv.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Conv2d(
                in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        # The projection sees the activated input, the identity the raw one.
        if self.shortcut is None:
            return x + out
        return self.shortcut(activated) + out


@MODELS.register_module()
class CifarWideResNet(BaseBackbone):
    """WRN-depth-k for 32x32 inputs, as in the CIFAR-100 KD zoo.

    A 3x3 stem conv, three stages of ``(depth - 4) / 6`` pre-activation
    blocks with ``16k, 32k, 64k`` channels (strides 1, 2, 2), then the final
    BN-ReLU. Returns a one-tuple with the ``(N, 64k, 8, 8)`` map.

    Args:
        depth (int): 6n + 4, e.g. 16 or 40.
        widen_factor (int): the width multiplier k. Defaults to 1.
        init_cfg (dict, optional): initialisation; the default
            is the zoo's (He-normal, fan-out convs).
    """

    def __init__(self,
                 depth: int,
                 widen_factor: int = 1,
                 init_cfg: Optional[dict] = ZOO_CONV_INIT) -> None:
        super().__init__(init_cfg)
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f'WRN depth must be 6n + 4 (n >= 1), '
                             f'got {depth}')
        num_blocks = (depth - 4) // 6
        channels = [16 * widen_factor * 2**i for i in range(3)]
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        in_channels = 16
        for i, (out_channels, stride) in enumerate(zip(channels, (1, 2, 2))):
            blocks = [PreActBlock(in_channels, out_channels, stride)]
            blocks += [
                PreActBlock(out_channels, out_channels, 1)
                for _ in range(num_blocks - 1)
            ]
            self.add_module(f'block{i + 1}', nn.Sequential(*blocks))
            in_channels = out_channels
        self.bn1 = nn.BatchNorm2d(in_channels)

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        x = self.conv1(x)
        x = self.block3(self.block2(self.block1(x)))
        return (F.relu(self.bn1(x)), )
