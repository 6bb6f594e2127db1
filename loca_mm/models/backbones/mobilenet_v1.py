"""MobileNetV1 (Howard et al., 2017) for ImageNet, in the layout that the
logit-distillation literature (CRD, DKD) uses as the ResNet50 student."""
from typing import Sequence, Tuple

from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


@MODELS.register_module()
class MobileNetV1(BaseBackbone):
    """MobileNetV1 backbone.

    A 3x3 stride-2 convolution to 32 channels, then 13 depthwise-separable
    blocks (3x3 depthwise + 1x1 pointwise convolution, each followed by BN
    and ReLU), grouped into four stages that end at strides 4, 8, 16 and 32
    with 128, 256, 512 and 1024 channels. With ``GlobalAveragePooling`` and
    a 1000-class ``LinearClsHead`` the classifier has 4,231,976 parameters,
    as the MobileNetV1 of the DKD code base.

    Args:
        out_indices (Sequence[int]): stages (0-3) whose outputs are
            returned. Defaults to ``(3, )``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k >= 1 the
            stem and the first k stages. Defaults to -1.
        norm_eval (bool): keep BN layers in eval mode while training.
            Defaults to False.
        conv_cfg (dict, optional): convolution layer config.
        norm_cfg (dict): normalization layer config. Defaults to BN.
        act_cfg (dict): activation config. Defaults to ReLU.
        init_cfg (dict | list[dict], optional): initialization config.
            Defaults to None: PyTorch's default initialisation of every
            layer, as the DKD code base's MobileNetV1 (which sets none).
    """

    # Per stage: (out_channels, stride) of each depthwise-separable block.
    arch_settings = (
        ((64, 1), (128, 2), (128, 1)),
        ((256, 2), (256, 1)),
        ((512, 2), ) + ((512, 1), ) * 5,
        ((1024, 2), (1024, 1)),
    )
    stem_channels = 32

    def __init__(self,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 conv_cfg: dict = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        num_stages = len(self.arch_settings)
        out_indices = tuple(out_indices)
        for index in out_indices:
            if not 0 <= index < num_stages:
                raise ValueError(f'out_indices must be in [0, {num_stages}), '
                                 f'got {out_indices}')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                             f'got {frozen_stages}')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        layer_cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.stem = ConvModule(
            3, self.stem_channels, 3, stride=2, padding=1, **layer_cfg)
        in_channels = self.stem_channels
        self.stages = nn.ModuleList()
        for blocks in self.arch_settings:
            stage = []
            for out_channels, stride in blocks:
                stage.append(
                    DepthwiseSeparableConvModule(
                        in_channels,
                        out_channels,
                        3,
                        stride=stride,
                        padding=1,
                        **layer_cfg))
                in_channels = out_channels
            self.stages.append(nn.Sequential(*stage))
        self._freeze_stages()

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is None:
            # mmcv's ConvModule He-initialises its convolution whatever the
            # backbone's init_cfg says; PyTorch's default replaces it.
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    module.reset_parameters()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        # -1: nothing, 0: the stem, k: the stem and the first k stages.
        for module in [self.stem, *self.stages][:self.frozen_stages + 1]:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'MobileNetV1':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
