"""A small plain ConvNet for 28x28 images (Fashion-MNIST, MNIST)."""
from typing import Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmpretrain.registry import MODELS


@MODELS.register_module()
class SmallConvNet(BaseModule):
    """Stages of ``conv3x3-BN-ReLU`` layers, each stage halving the resolution.

    Small enough to train in seconds per epoch on a CPU, which is what the
    Fashion-MNIST demo and benchmarks need; ``stage_channels`` sets the size
    (a teacher and a student are the same class with different widths).

    The first convolution of a stage has stride 2. Max pooling was the
    other option; on a CPU its backward pass cost more than all the
    convolutions of these small nets together.

    The output is either the flattened last feature map (``flatten=True``,
    keeping where a feature sits, which matters at 7x7) or that map itself
    for a pooling neck.

    Args:
        in_channels (int): channels of the input image. Defaults to 1.
        stage_channels (Sequence[int]): output channels of each stage.
            Defaults to (16, 32).
        convs_per_stage (int): conv-BN-ReLU layers per stage. Defaults to 1.
        flatten (bool): return the flattened feature map. Defaults to True.
        init_cfg (dict | list[dict], optional): mmengine initialisation.
            Defaults to Kaiming for convolutions and constant 1/0 for BN.
    """

    def __init__(
        self,
        in_channels: int = 1,
        stage_channels: Sequence[int] = (16, 32),
        convs_per_stage: int = 1,
        flatten: bool = True,
        init_cfg: Optional[Union[dict, Sequence[dict]]] = (
            dict(type='Kaiming', layer='Conv2d'),
            dict(type='Constant', val=1, layer=['_BatchNorm']))
    ) -> None:
        if isinstance(init_cfg, Sequence):
            init_cfg = list(init_cfg)
        super().__init__(init_cfg=init_cfg)
        if not stage_channels:
            raise ValueError('stage_channels must name at least one stage')
        if convs_per_stage < 1:
            raise ValueError(
                f'convs_per_stage must be >= 1, got {convs_per_stage}')
        layers = []
        channels = in_channels
        for out_channels in stage_channels:
            for index in range(convs_per_stage):
                layers += [
                    nn.Conv2d(
                        channels,
                        out_channels,
                        3,
                        stride=2 if index == 0 else 1,
                        padding=1,
                        bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True)
                ]
                channels = out_channels
        self.layers = nn.Sequential(*layers)
        self.flatten = flatten

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        """Return a one-element tuple, as mmpretrain necks and heads expect.

        Args:
            x (Tensor): images (N, in_channels, H, W).

        Returns:
            tuple[Tensor]: features (N, C*h*w) if ``flatten``, else
            (N, C, h, w).
        """
        features = self.layers(x)
        if self.flatten:
            features = torch.flatten(features, 1)
        return (features, )
