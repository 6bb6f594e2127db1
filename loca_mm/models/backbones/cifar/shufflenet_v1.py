"""ShuffleNetV1 (``ShuffleV1``) of the CIFAR-100 KD zoo."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.models.utils import channel_shuffle
from mmpretrain.registry import MODELS
from torch import Tensor, nn


class ShuffleV1Unit(nn.Module):
    """Grouped 1x1 - shuffle - depthwise 3x3 - grouped 1x1 unit.

    A stride-2 unit concatenates its 3x3-average-pooled input, so its branch
    only makes ``out_channels - in_channels`` channels.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels of the unit.
        stride (int): 1 (residual sum) or 2 (concatenation).
        groups (int): groups of the second 1x1 conv.
        first_groups (int): groups of the first 1x1 conv (and of the
            shuffle after it).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 groups: int, first_groups: int) -> None:
        super().__init__()
        self.stride = stride
        self.first_groups = first_groups
        branch_channels = out_channels - in_channels if stride == 2 \
            else out_channels
        mid_channels = branch_channels // 4
        self.conv1 = nn.Conv2d(
            in_channels, mid_channels, 1, groups=first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(
            mid_channels,
            mid_channels,
            3,
            stride,
            padding=1,
            groups=mid_channels,
            bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(
            mid_channels, branch_channels, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            shortcut = F.avg_pool2d(x, 3, stride=2, padding=1)
            return F.relu(torch.cat([out, shortcut], dim=1))
        return F.relu(out + x)


@MODELS.register_module()
class CifarShuffleNetV1(BaseBackbone):
    """ShuffleNetV1 for 32x32 inputs, as in the CIFAR-100 KD zoo.

    A 1x1 stem conv to 24 channels (no stride, no max-pool), then three
    stages whose first unit has stride 2, so a 32x32 input gives a 4x4 map.
    The first unit of the first stage uses an ungrouped first 1x1 conv, as
    24 stem channels are too few to split. Returns a one-tuple with the
    final map.

    Args:
        groups (int): groups of the 1x1 convs. Defaults to 3.
        stage_channels (Sequence[int]): output channels of the stages.
            Defaults to ``(240, 480, 960)``.
        stage_blocks (Sequence[int]): units per stage.
            Defaults to ``(4, 8, 4)``.
        stem_channels (int): output channels of the stem.
            Defaults to 24.
        init_cfg (dict, optional): initialisation; the zoo
            keeps PyTorch's defaults. Defaults to None.
    """

    def __init__(self,
                 groups: int = 3,
                 stage_channels: Sequence[int] = (240, 480, 960),
                 stage_blocks: Sequence[int] = (4, 8, 4),
                 stem_channels: int = 24,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.conv1 = nn.Conv2d(3, stem_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        in_channels = stem_channels
        for i, (channels,
                num_units) in enumerate(zip(stage_channels, stage_blocks)):
            units = []
            for j in range(num_units):
                first_groups = 1 if i == 0 and j == 0 else groups
                units.append(
                    ShuffleV1Unit(in_channels, channels, 2 if j == 0 else 1,
                                  groups, first_groups))
                in_channels = channels
            self.add_module(f'layer{i + 1}', nn.Sequential(*units))
        self.num_stages = len(stage_channels)

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f'layer{i + 1}')(x)
        return (x, )
