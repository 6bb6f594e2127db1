"""Shared helpers for the CIFAR-100 zoo tests: the zoo's parameter counts,
model building from the configs, and an independent functional statement of
each zoo architecture with the zoo's state-dict key names.

The functional networks are written from the CRD / RepDistiller model
definitions, not from loca_mm's backbones, so a test comparing the two
catches a layer, order or naming difference in either.
"""
import os.path as osp
from collections import OrderedDict
from typing import Callable, Dict

# loca_mm first: it repairs the stack for current PyTorch and registers the
# zoo backbones.
import loca_mm  # noqa: F401,I001
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmpretrain.registry import MODELS
from torch import Tensor

from _support import REPO

CONFIG_DIR = str(REPO / 'configs' / '_base_' / 'models' / 'cifar100')

# Parameter counts of the zoo's reference code with a 100-class head.
ZOO_PARAMS = {
    'resnet8': 83_892,
    'resnet14': 181_108,
    'resnet20': 278_324,
    'resnet32': 472_756,
    'resnet44': 667_188,
    'resnet56': 861_620,
    'resnet110': 1_736_564,
    'resnet8x4': 1_233_540,
    'resnet32x4': 7_433_860,
    'resnet50': 23_705_252,
    'resnet18': 11_220_132,
    'wrn_16_1': 180_916,
    'wrn_16_2': 703_284,
    'wrn_40_1': 569_780,
    'wrn_40_2': 2_255_156,
    'vgg8': 3_965_028,
    'vgg11': 9_277_284,
    'vgg13': 9_462_180,
    'vgg16': 14_774_436,
    'vgg19': 20_086_692,
    'mobilenetv2': 812_836,
    'shufflev1': 949_258,
    'shufflev2': 1_355_528,
}
NUM_CLASSES = 100


def build_model(name: str) -> torch.nn.Module:
    """The ImageClassifier of ``configs/_base_/models/cifar100/<name>.py``."""
    cfg = Config.fromfile(osp.join(CONFIG_DIR, f'{name}.py'))
    return MODELS.build(cfg.model)


class ReferenceNet:
    """Runs a zoo architecture functionally in float64, creating each weight
    under the zoo's state-dict key as the forward reaches it.

    BN running statistics are set near the batch's own statistics, as in a
    trained network, so activations stay of order one through 110 layers and
    a logit comparison stays sensitive.

    Args:
        seed (int): seed of the weights.
    """

    def __init__(self, seed: int = 0) -> None:
        self.state_dict = OrderedDict()
        self.num_params = 0
        self._generator = torch.Generator().manual_seed(seed)

    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(
            *shape, generator=self._generator, dtype=torch.float64)

    def _add(self, key: str, value: Tensor, is_param: bool = True) -> Tensor:
        assert key not in self.state_dict, f'{key} created twice'
        self.state_dict[key] = value
        self.num_params += value.numel() if is_param else 0
        return value

    def conv(self,
             key: str,
             x: Tensor,
             out_channels: int,
             kernel_size: int,
             stride: int = 1,
             groups: int = 1,
             bias: bool = False) -> Tensor:
        in_per_group = x.shape[1] // groups
        fan_in = in_per_group * kernel_size**2
        weight = self._add(
            f'{key}.weight',
            self._randn(out_channels, in_per_group, kernel_size, kernel_size) *
            (2 / fan_in)**0.5)
        conv_bias = None
        if bias:
            conv_bias = self._add(f'{key}.bias',
                                  0.1 * self._randn(out_channels))
        return F.conv2d(x, weight, conv_bias, stride, kernel_size // 2, 1,
                        groups)

    def bn(self, key: str, x: Tensor) -> Tensor:
        channels = x.shape[1]
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        weight = self._add(f'{key}.weight', 1 + 0.2 * self._randn(channels))
        bias = self._add(f'{key}.bias', 0.1 * self._randn(channels))
        running_mean = self._add(
            f'{key}.running_mean',
            mean + 0.1 * var.sqrt() * self._randn(channels), False)
        running_var = self._add(
            f'{key}.running_var',
            var * (1 + 0.2 * self._randn(channels).tanh()) + 1e-2, False)
        # 240 epochs of 782 batches, as in a released file
        self._add(f'{key}.num_batches_tracked', torch.tensor(187_680), False)
        return F.batch_norm(x, running_mean, running_var, weight, bias, False,
                            0.0, 1e-5)

    def conv_bn(self, conv_key: str, bn_key: str, x: Tensor, *args,
                **kwargs) -> Tensor:
        """``bn(conv(x))``; ``args``/``kwargs`` as for :meth:`conv`."""
        return self.bn(bn_key, self.conv(conv_key, x, *args, **kwargs))

    def linear(self, key: str, x: Tensor, out_features: int) -> Tensor:
        weight = self._add(
            f'{key}.weight',
            self._randn(out_features, x.shape[1]) / x.shape[1]**0.5)
        bias = self._add(f'{key}.bias', 0.1 * self._randn(out_features))
        return F.linear(x, weight, bias)


def _shuffle(x: Tensor, groups: int) -> Tensor:
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h, w).permute(0, 2, 1, 3, 4)
    return x.reshape(n, c, h, w)


def cifar_resnet(net: ReferenceNet, x: Tensor, depth: int,
                 filters: tuple) -> Tensor:
    """RepDistiller ``models/resnet.py``: ResNet(depth, filters)."""
    x = F.relu(net.conv_bn('conv1', 'bn1', x, filters[0], 3))
    for stage, (planes, stride) in enumerate(zip(filters[1:], (1, 2, 2)), 1):
        for i in range((depth - 2) // 6):
            key, s = f'layer{stage}.{i}', stride if i == 0 else 1
            out = F.relu(
                net.conv_bn(f'{key}.conv1', f'{key}.bn1', x, planes, 3, s))
            out = net.conv_bn(f'{key}.conv2', f'{key}.bn2', out, planes, 3)
            if s != 1 or x.shape[1] != planes:
                x = net.conv_bn(f'{key}.downsample.0', f'{key}.downsample.1',
                                x, planes, 1, s)
            x = F.relu(out + x)
    x = F.avg_pool2d(x, 8).flatten(1)
    return net.linear('fc', x, NUM_CLASSES)


def resnet_v2(net: ReferenceNet, x: Tensor, bottleneck: bool,
              num_blocks: tuple) -> Tensor:
    """RepDistiller ``models/resnetv2.py``: ResNet18 / ResNet50."""
    expansion = 4 if bottleneck else 1
    x = F.relu(net.conv_bn('conv1', 'bn1', x, 64, 3))
    for stage, (planes, blocks, stride) in enumerate(
            zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2)), 1):
        for i in range(blocks):
            key, s = f'layer{stage}.{i}', stride if i == 0 else 1
            if bottleneck:
                out = F.relu(
                    net.conv_bn(f'{key}.conv1', f'{key}.bn1', x, planes, 1))
                out = F.relu(
                    net.conv_bn(f'{key}.conv2', f'{key}.bn2', out, planes, 3,
                                s))
                out = net.conv_bn(f'{key}.conv3', f'{key}.bn3', out,
                                  4 * planes, 1)
            else:
                out = F.relu(
                    net.conv_bn(f'{key}.conv1', f'{key}.bn1', x, planes, 3, s))
                out = net.conv_bn(f'{key}.conv2', f'{key}.bn2', out, planes, 3)
            if s != 1 or x.shape[1] != expansion * planes:
                x = net.conv_bn(f'{key}.shortcut.0', f'{key}.shortcut.1', x,
                                expansion * planes, 1, s)
            x = F.relu(out + x)
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return net.linear('linear', x, NUM_CLASSES)


def wrn(net: ReferenceNet, x: Tensor, depth: int, k: int) -> Tensor:
    """RepDistiller ``models/wrn.py``: WideResNet(depth, widen_factor=k)."""
    x = net.conv('conv1', x, 16, 3)
    for stage, (planes, stride) in enumerate(
            zip((16 * k, 32 * k, 64 * k), (1, 2, 2)), 1):
        for i in range((depth - 4) // 6):
            key, s = f'block{stage}.layer.{i}', stride if i == 0 else 1
            activated = F.relu(net.bn(f'{key}.bn1', x))
            out = F.relu(
                net.bn(f'{key}.bn2',
                       net.conv(f'{key}.conv1', activated, planes, 3, s)))
            out = net.conv(f'{key}.conv2', out, planes, 3)
            if x.shape[1] == planes:
                x = x + out
            else:
                x = net.conv(f'{key}.convShortcut', activated, planes, 1,
                             s) + out
    x = F.relu(net.bn('bn1', x))
    x = F.avg_pool2d(x, 8).flatten(1)
    return net.linear('fc', x, NUM_CLASSES)


def vgg_bn(net: ReferenceNet, x: Tensor, cfg: tuple) -> Tensor:
    """RepDistiller ``models/vgg.py``: vgg*_bn on a 32x32 input."""
    for block, channels in enumerate(cfg):
        if block in (1, 2, 3):  # pool0..pool2; pool3 only for 64x64 inputs
            x = F.max_pool2d(x, 2, 2)
        for j, width in enumerate(channels):
            x = F.relu(
                net.conv_bn(
                    f'block{block}.{3 * j}',
                    f'block{block}.{3 * j + 1}',
                    x,
                    width,
                    3,
                    bias=True))
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return net.linear('classifier', x, NUM_CLASSES)


def mobile_half(net: ReferenceNet, x: Tensor) -> Tensor:
    """RepDistiller ``models/mobilenetv2.py``: mobile_half (T=6, W=0.5)."""
    setting = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    x = F.relu(net.conv_bn('conv1.0', 'conv1.1', x, 16, 3, 2))
    for b, (t, c, n, s) in enumerate(setting):
        for j in range(n):
            key, stride = f'blocks.{b}.{j}.conv', s if j == 0 else 1
            hidden, out_channels = x.shape[1] * t, int(c * 0.5)
            out = F.relu(net.conv_bn(f'{key}.0', f'{key}.1', x, hidden, 1))
            out = F.relu(
                net.conv_bn(
                    f'{key}.3',
                    f'{key}.4',
                    out,
                    hidden,
                    3,
                    stride,
                    groups=hidden))
            out = net.conv_bn(f'{key}.6', f'{key}.7', out, out_channels, 1)
            x = x + out if stride == 1 and x.shape[1] == out_channels else out
    x = F.relu(net.conv_bn('conv2.0', 'conv2.1', x, 1280, 1))
    x = F.avg_pool2d(x, 2, ceil_mode=True).flatten(1)
    return net.linear('classifier.0', x, NUM_CLASSES)


def shuffle_v1(net: ReferenceNet, x: Tensor) -> Tensor:
    """RepDistiller ``models/ShuffleNetv1.py``: ShuffleV1."""
    x = F.relu(net.conv_bn('conv1', 'bn1', x, 24, 1))
    for stage, (planes,
                blocks) in enumerate(zip((240, 480, 960), (4, 8, 4)), 1):
        for i in range(blocks):
            key, stride = f'layer{stage}.{i}', 2 if i == 0 else 1
            out_planes = planes - x.shape[1] if i == 0 else planes
            mid, g = out_planes // 4, 1 if x.shape[1] == 24 else 3
            out = F.relu(
                net.conv_bn(f'{key}.conv1', f'{key}.bn1', x, mid, 1, groups=g))
            out = _shuffle(out, g)
            out = F.relu(
                net.conv_bn(
                    f'{key}.conv2',
                    f'{key}.bn2',
                    out,
                    mid,
                    3,
                    stride,
                    groups=mid))
            out = net.conv_bn(
                f'{key}.conv3', f'{key}.bn3', out, out_planes, 1, groups=3)
            if stride == 2:
                x = F.relu(torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], 1))
            else:
                x = F.relu(out + x)
    x = F.avg_pool2d(x, 4).flatten(1)
    return net.linear('linear', x, NUM_CLASSES)


def shuffle_v2(net: ReferenceNet, x: Tensor) -> Tensor:
    """RepDistiller ``models/ShuffleNetv2.py``: ShuffleV2 (net_size 1)."""
    x = F.relu(net.conv_bn('conv1', 'bn1', x, 24, 1))
    for stage, (planes,
                blocks) in enumerate(zip((116, 232, 464), (3, 7, 3)), 1):
        key, c_in, mid = f'layer{stage}.0', x.shape[1], planes // 2
        left = net.conv_bn(
            f'{key}.conv1', f'{key}.bn1', x, c_in, 3, 2, groups=c_in)
        left = F.relu(net.conv_bn(f'{key}.conv2', f'{key}.bn2', left, mid, 1))
        right = F.relu(net.conv_bn(f'{key}.conv3', f'{key}.bn3', x, mid, 1))
        right = net.conv_bn(
            f'{key}.conv4', f'{key}.bn4', right, mid, 3, 2, groups=mid)
        right = F.relu(
            net.conv_bn(f'{key}.conv5', f'{key}.bn5', right, mid, 1))
        x = _shuffle(torch.cat([left, right], 1), 2)
        for i in range(1, blocks + 1):
            key, c = f'layer{stage}.{i}', x.shape[1] // 2
            kept, out = x[:, :c], x[:, c:]
            out = F.relu(net.conv_bn(f'{key}.conv1', f'{key}.bn1', out, c, 1))
            out = net.conv_bn(
                f'{key}.conv2', f'{key}.bn2', out, c, 3, groups=c)
            out = F.relu(net.conv_bn(f'{key}.conv3', f'{key}.bn3', out, c, 1))
            x = _shuffle(torch.cat([kept, out], 1), 2)
    x = F.relu(net.conv_bn('conv2', 'bn2', x, 1024, 1))
    x = F.avg_pool2d(x, 4).flatten(1)
    return net.linear('linear', x, NUM_CLASSES)


_THIN, _WIDE = (16, 16, 32, 64), (32, 64, 128, 256)
_VGG_CFGS = {
    'vgg8': ((64, ), (128, ), (256, ), (512, ), (512, )),
    'vgg11': ((64, ), (128, ), (256, ) * 2, (512, ) * 2, (512, ) * 2),
    'vgg13': ((64, ) * 2, (128, ) * 2, (256, ) * 2, (512, ) * 2, (512, ) * 2),
    'vgg16': ((64, ) * 2, (128, ) * 2, (256, ) * 3, (512, ) * 3, (512, ) * 3),
    'vgg19': ((64, ) * 2, (128, ) * 2, (256, ) * 4, (512, ) * 4, (512, ) * 4),
}
# loca_mm model name -> forward of the zoo's network
REFERENCE_FORWARDS: Dict[str, Callable[[ReferenceNet, Tensor], Tensor]] = {
    **{
        f'resnet{d}': (lambda net, x, d=d: cifar_resnet(net, x, d, _THIN))
        for d in (8, 14, 20, 32, 44, 56, 110)
    },
    'resnet8x4': lambda net, x: cifar_resnet(net, x, 8, _WIDE),
    'resnet32x4': lambda net, x: cifar_resnet(net, x, 32, _WIDE),
    'resnet18': lambda net, x: resnet_v2(net, x, False, (2, 2, 2, 2)),
    'resnet50': lambda net, x: resnet_v2(net, x, True, (3, 4, 6, 3)),
    **{
        f'wrn_{d}_{k}': (lambda net, x, d=d, k=k: wrn(net, x, d, k))
        for d in (16, 40)
        for k in (1, 2)
    },
    **{
        name: (lambda net, x, cfg=cfg: vgg_bn(net, x, cfg))
        for name, cfg in _VGG_CFGS.items()
    },
    'mobilenetv2': mobile_half,
    'shufflev1': shuffle_v1,
    'shufflev2': shuffle_v2,
}


def reference_run(name: str, x: Tensor, seed: int = 0) -> ReferenceNet:
    """Run the zoo's ``name`` on ``x``; the returned net holds the zoo
    state dict, its parameter count, and the logits as ``.logits``."""
    net = ReferenceNet(seed)
    net.logits = REFERENCE_FORWARDS[name](net, x)
    return net


def released_checkpoint(state_dict: dict) -> dict:
    """A checkpoint in the format the zoo releases."""
    return dict(
        model=state_dict,
        epoch=240,
        accuracy=torch.tensor(72.34),
        optimizer=dict(
            state={0: dict(momentum_buffer=torch.zeros(3))},
            param_groups=[
                dict(
                    lr=5e-5,
                    momentum=0.9,
                    dampening=0,
                    weight_decay=5e-4,
                    nesterov=False,
                    params=[0])
            ]))
