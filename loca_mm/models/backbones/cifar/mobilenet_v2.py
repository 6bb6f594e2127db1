"""MobileNetV2 (``mobile_half``) of the CIFAR-100 KD zoo."""
from typing import Optional, Tuple

from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from .init import ZOO_CONV_INIT


def conv_bn_relu(in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 stride: int = 1,
                 groups: int = 1) -> list:
    """Layers ``[conv, bn, relu]`` with 'same' padding and no conv bias."""
    return [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True)
    ]


class InvertedResidual(nn.Module):
    """Expand (1x1) - depthwise (3x3) - project (1x1) block.

    Unlike mmpretrain's MobileNetV2, the zoo keeps the 1x1 expansion conv
    when ``expand_ratio`` is 1, and uses ReLU rather than ReLU6. ``conv`` is
    one flat Sequential so its indices match the zoo's state-dict keys.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        stride (int): stride of the depthwise conv.
        expand_ratio (int): hidden channels per input channel.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            *conv_bn_relu(in_channels, hidden, 1),
            *conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


@MODELS.register_module()
class CifarMobileNetV2(BaseBackbone):
    """MobileNetV2 for 32x32 inputs, as in the CIFAR-100 KD zoo.

    The standard seven stages (output stride 16, so a 32x32 input gives a
    2x2 map) with channels ``int(c * widen_factor)`` and a final 1x1 conv to
    1280 channels (more only when ``widen_factor > 1``). The zoo's
    ``mobile_half`` is ``widen_factor=0.5, expand_ratio=6``. Returns a
    one-tuple with the final map.

    Args:
        widen_factor (float): width multiplier. Defaults to 0.5.
        expand_ratio (int): expansion of stages 2 to 7 (stage 1 uses 1).
            Defaults to 6.
        init_cfg (dict, optional): initialisation; the default
            is the zoo's (He-normal, fan-out convs).
    """

    # (channels, blocks, stride of the first block) of stages 1 to 7
    arch_settings = ((16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 4, 2),
                     (96, 3, 1), (160, 3, 2), (320, 1, 1))

    def __init__(self,
                 widen_factor: float = 0.5,
                 expand_ratio: int = 6,
                 init_cfg: Optional[dict] = ZOO_CONV_INIT) -> None:
        super().__init__(init_cfg)
        in_channels = int(32 * widen_factor)
        self.conv1 = nn.Sequential(*conv_bn_relu(3, in_channels, 3, 2))
        self.blocks = nn.ModuleList()
        for i, (channels, num_blocks, stride) in enumerate(self.arch_settings):
            out_channels = int(channels * widen_factor)
            ratio = 1 if i == 0 else expand_ratio
            stage = []
            for j in range(num_blocks):
                stage.append(
                    InvertedResidual(in_channels, out_channels,
                                     stride if j == 0 else 1, ratio))
                in_channels = out_channels
            self.blocks.append(nn.Sequential(*stage))
        self.out_channels = int(1280 * max(widen_factor, 1.0))
        self.conv2 = nn.Sequential(
            *conv_bn_relu(in_channels, self.out_channels, 1))

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        x = self.conv1(x)
        for stage in self.blocks:
            x = stage(x)
        return (self.conv2(x), )
