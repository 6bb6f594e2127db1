"""Freshly built students start from the reference implementations'
initialisation (RepDistiller / mdistiller model code), layer by layer.

The reference rules, per family, as that code writes them:

- CIFAR ResNets (resnet8 ... resnet110, x4, ResNet18/50), WRN, VGG and
  MobileNetV2: convolutions ``normal_(0, sqrt(2 / (k * k * out_channels)))``
  (He-normal, fan-out); ShuffleNetV1/V2 set nothing (PyTorch's default).
- VGG's convolution biases are zeroed.
- The last Linear: PyTorch's default for the ResNets and ShuffleNets; WRN
  keeps the default weight and zeroes the bias; VGG and MobileNetV2 use
  ``normal_(0, 0.01)`` and a zero bias.
- BatchNorm weight 1, bias 0; no zero-init of residual branches.
- ImageNet: mdistiller's ResNet-18 as the CIFAR ResNets (He-normal fan-out
  convolutions, default Linear); its MobileNetV1 sets nothing.

PyTorch's default for Conv2d/Linear weights is ``kaiming_uniform_(a=sqrt(5))``,
uniform on +-1/sqrt(fan_in) (std 1/sqrt(3 fan_in)), and the bias uniform on
the same bound.
"""
import math

import _cifar_zoo_utils as zoo
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS
from torch import nn

from _support import REPO

MODEL_DIR = REPO / 'configs/_base_/models'
HE, TORCH, N001, ZERO = 'he_fan_out', 'torch_default', 'normal_0.01', 'zero'
# family: (conv weight, conv bias, linear weight, linear bias)
RULES = {
    'resnet': (HE, None, TORCH, TORCH),
    'wrn': (HE, None, TORCH, ZERO),
    'vgg': (HE, ZERO, N001, ZERO),
    'mobilenetv2': (HE, None, N001, ZERO),
    'shufflenet': (TORCH, None, TORCH, TORCH),
    'mobilenetv1': (TORCH, None, TORCH, TORCH),
}


def family(name: str) -> str:
    for prefix, result in (('resnet', 'resnet'), ('wrn', 'wrn'),
                           ('vgg', 'vgg'), ('shuffle', 'shufflenet')):
        if name.startswith(prefix):
            return result
    return name


IMAGENET = {'resnet18': 'resnet', 'mobilenetv1': 'mobilenetv1'}
MODELS_UNDER_TEST = [('cifar100', name, family(name))
                     for name in zoo.ZOO_PARAMS] + [
                         ('imagenet', name, fam)
                         for name, fam in IMAGENET.items()
                     ]


def build(dataset: str, name: str, seed: int) -> nn.Module:
    cfg = Config.fromfile(str(MODEL_DIR / dataset / f'{name}.py'))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def check(values: torch.Tensor, rule: str, fan_in: int, fan_out: int,
          where: str) -> None:
    """``values`` (one layer's, pooled over seeds) follow ``rule``."""
    values = values.double().flatten()
    n = values.numel()
    if rule == ZERO:
        assert not values.any(), f'{where}: not zero'
        return
    if rule == TORCH:
        bound = 1 / math.sqrt(fan_in)
        std = bound / math.sqrt(3)
        assert values.abs().max() <= bound * (1 + 1e-6), \
            f'{where}: beyond the uniform bound {bound}'
    else:
        std = math.sqrt(2 / fan_out) if rule == HE else 0.01
        if n >= 200:  # a normal sample exceeds a uniform's bound
            assert values.abs().max() > math.sqrt(3) * std, \
                f'{where}: looks uniform, not normal'
    # Sample std of n values: relative standard error <= 1/sqrt(2n).
    tolerance = 4.5 / math.sqrt(2 * n)
    assert abs(values.std().item() / std - 1) < tolerance, (
        f'{where}: std {values.std().item():.5f}, {rule} gives {std:.5f}')
    assert abs(values.mean().item()) < 4.5 * std / math.sqrt(n), \
        f'{where}: mean {values.mean().item()}'


@pytest.fixture(autouse=True, scope='module')
def quiet_init_logs():
    """init_weights logs every parameter at INFO."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    logger.setLevel(level)
    torch.set_num_threads(threads)


@pytest.mark.parametrize('dataset, name, fam', MODELS_UNDER_TEST,
                         ids=[f'{d}-{n}' for d, n, _ in MODELS_UNDER_TEST])
def test_initial_weights_follow_the_reference(dataset, name, fam):
    conv_w, conv_b, linear_w, linear_b = RULES[fam]
    # Pool small models over seeds so that their small layers still test
    # the rule; one draw of a large model has enough values.
    first = build(dataset, name, 0)
    size = sum(p.numel() for p in first.parameters())
    models = [first] + [build(dataset, name, s) for s in (1, 2)
                        if size < 3_000_000]
    layers = [dict(m.named_modules()) for m in models]
    checked = 0
    for key, module in layers[0].items():
        where = f'{dataset}/{name}: {key}'
        same = [m[key] for m in layers]
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = module.weight
            fan_in = weight[0].numel()
            fan_out = weight.shape[0] * weight[0, 0].numel()
            is_conv = isinstance(module, nn.Conv2d)
            check(torch.stack([m.weight for m in same]),
                  conv_w if is_conv else linear_w, fan_in, fan_out, where)
            bias_rule = conv_b if is_conv else linear_b
            assert (module.bias is None) == (bias_rule is None), where
            if module.bias is not None:
                check(torch.stack([m.bias for m in same]), bias_rule,
                      fan_in, fan_out, f'{where}.bias')
            checked += 1
        elif isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(
                module.weight)), f'{where}: BN weight not 1'
            assert not module.bias.any(), f'{where}: BN bias not 0'
    assert checked > 3
