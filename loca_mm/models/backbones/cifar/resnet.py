"""The thin CIFAR ResNets (resnet8 ... resnet110, resnet8x4, resnet32x4) of
the CRD / RepDistiller / mdistiller model zoo."""
from typing import Sequence

from mmpretrain.models.backbones import ResNet_CIFAR
from mmpretrain.models.backbones.resnet import BasicBlock
from mmpretrain.registry import MODELS

# depth = 6n + 2: three stages of n basic blocks, plus the stem conv and fc.
ZOO_DEPTHS = (8, 14, 20, 32, 44, 56, 110)


@MODELS.register_module()
class CifarResNet(ResNet_CIFAR):
    """Three-stage CIFAR ResNet of He et al. (2016), as in the KD zoo.

    The zoo's layout is mmpretrain's ``ResNet_CIFAR`` (3x3 stem, no
    max-pool, ``downsample.0/1`` projections) cut to three stages of
    ``(depth - 2) / 6`` basic blocks, so this class only adds those depths
    and the zoo's defaults. ``resnet20`` is ``depth=20``; ``resnet8x4`` and
    ``resnet32x4`` are ``stem_channels=32, base_channels=64``.

    Args:
        depth (int): one of 8, 14, 20, 32, 44, 56, 110.
        stem_channels (int): output channels of the stem conv.
            Defaults to 16.
        base_channels (int): channels of the first stage; they double in
            each later stage. Defaults to 16.
        out_indices (Sequence[int]): stages whose outputs are returned.
            Defaults to ``(2, )``.
        zero_init_residual (bool): zero the last norm of each block at
            init. The zoo does not, hence False. Defaults to False.
        **kwargs: other arguments of ``ResNet_CIFAR``.
    """

    arch_settings = {
        depth: (BasicBlock, ((depth - 2) // 6, ) * 3)
        for depth in ZOO_DEPTHS
    }

    def __init__(self,
                 depth: int,
                 stem_channels: int = 16,
                 base_channels: int = 16,
                 out_indices: Sequence[int] = (2, ),
                 zero_init_residual: bool = False,
                 **kwargs) -> None:
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for CifarResNet, '
                           f'expected one of {ZOO_DEPTHS}')
        super().__init__(
            depth,
            stem_channels=stem_channels,
            base_channels=base_channels,
            num_stages=3,
            strides=(1, 2, 2),
            dilations=(1, 1, 1),
            out_indices=out_indices,
            zero_init_residual=zero_init_residual,
            **kwargs)
