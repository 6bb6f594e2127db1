"""ShuffleNetV2 (``ShuffleV2``) of the CIFAR-100 KD zoo."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.models.utils import channel_shuffle
from mmpretrain.registry import MODELS
from torch import Tensor, nn


def conv_bn(in_channels: int,
            out_channels: int,
            kernel_size: int,
            stride: int = 1,
            groups: int = 1) -> Tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A bias-free conv with 'same' padding and the BN that follows it."""
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding=kernel_size // 2,
        groups=groups,
        bias=False)
    return conv, nn.BatchNorm2d(out_channels)


class ShuffleV2DownUnit(nn.Module):
    """Stride-2 unit: two branches on the whole input, concatenated.

    Left: depthwise 3x3 (stride 2) - 1x1. Right: 1x1 - depthwise 3x3
    (stride 2) - 1x1. Each branch makes half of ``out_channels``.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.conv1, self.bn1 = conv_bn(
            in_channels, in_channels, 3, 2, groups=in_channels)
        self.conv2, self.bn2 = conv_bn(in_channels, mid, 1)
        self.conv3, self.bn3 = conv_bn(in_channels, mid, 1)
        self.conv4, self.bn4 = conv_bn(mid, mid, 3, 2, groups=mid)
        self.conv5, self.bn5 = conv_bn(mid, mid, 1)

    def forward(self, x: Tensor) -> Tensor:
        left = self.bn1(self.conv1(x))
        left = F.relu(self.bn2(self.conv2(left)))
        right = F.relu(self.bn3(self.conv3(x)))
        right = self.bn4(self.conv4(right))
        right = F.relu(self.bn5(self.conv5(right)))
        return channel_shuffle(torch.cat([left, right], dim=1), 2)


class ShuffleV2Unit(nn.Module):
    """Stride-1 unit: keeps the first half of the channels, transforms the
    second half (1x1 - depthwise 3x3 - 1x1), concatenates and shuffles.

    Args:
        channels (int): input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.half = channels // 2
        self.conv1, self.bn1 = conv_bn(self.half, self.half, 1)
        self.conv2, self.bn2 = conv_bn(
            self.half, self.half, 3, groups=self.half)
        self.conv3, self.bn3 = conv_bn(self.half, self.half, 1)

    def forward(self, x: Tensor) -> Tensor:
        kept, transformed = x[:, :self.half], x[:, self.half:]
        out = F.relu(self.bn1(self.conv1(transformed)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return channel_shuffle(torch.cat([kept, out], dim=1), 2)


@MODELS.register_module()
class CifarShuffleNetV2(BaseBackbone):
    """ShuffleNetV2 (1x) for 32x32 inputs, as in the CIFAR-100 KD zoo.

    A 1x1 stem conv to 24 channels (no stride, no max-pool), three stages of
    one stride-2 unit plus ``stage_blocks`` stride-1 units (a 32x32 input
    gives a 4x4 map), and a final 1x1 conv-BN-ReLU. Returns a one-tuple
    with the final map.

    Args:
        stage_channels (Sequence[int]): output channels of the stages.
            Defaults to ``(116, 232, 464)`` (the 1x net).
        stage_blocks (Sequence[int]): stride-1 units per stage.
            Defaults to ``(3, 7, 3)``.
        out_channels (int): channels of the final 1x1 conv.
            Defaults to 1024.
        stem_channels (int): output channels of the stem.
            Defaults to 24.
        init_cfg (dict, optional): initialisation; the zoo
            keeps PyTorch's defaults. Defaults to None.
    """

    def __init__(self,
                 stage_channels: Sequence[int] = (116, 232, 464),
                 stage_blocks: Sequence[int] = (3, 7, 3),
                 out_channels: int = 1024,
                 stem_channels: int = 24,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.conv1, self.bn1 = conv_bn(3, stem_channels, 1)
        in_channels = stem_channels
        for i, (channels,
                num_units) in enumerate(zip(stage_channels, stage_blocks)):
            units = [ShuffleV2DownUnit(in_channels, channels)]
            units += [ShuffleV2Unit(channels) for _ in range(num_units)]
            self.add_module(f'layer{i + 1}', nn.Sequential(*units))
            in_channels = channels
        self.num_stages = len(stage_channels)
        self.conv2, self.bn2 = conv_bn(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f'layer{i + 1}')(x)
        return (F.relu(self.bn2(self.conv2(x))), )
