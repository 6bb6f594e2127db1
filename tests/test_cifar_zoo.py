"""The CIFAR-100 zoo configs build the CRD / RepDistiller networks: same
parameter counts, same state-dict layout, same logits for the same weights,
same initialisation."""
import os

import _cifar_zoo_utils as zoo
import pytest
import torch
from torch import nn

from loca_mm.models.backbones.cifar import (CifarResNet, CifarVGG,
                                            CifarWideResNet)
from loca_mm.models.converters import (ZOO_MODELS,
                                       convert_repdistiller_checkpoint)

NAMES = sorted(zoo.ZOO_PARAMS)


def test_configs_converter_and_references_cover_the_same_models():
    configs = {
        name[:-3]
        for name in os.listdir(zoo.CONFIG_DIR) if name.endswith('.py')
    }
    assert configs == set(zoo.ZOO_PARAMS) == set(ZOO_MODELS) == set(
        zoo.REFERENCE_FORWARDS)
    assert len(configs) == 23


@pytest.mark.parametrize('name', NAMES)
def test_parameter_count(name):
    model = zoo.build_model(name)
    assert sum(p.numel() for p in model.parameters()) == zoo.ZOO_PARAMS[name]


@pytest.mark.parametrize('name', NAMES)
def test_converted_zoo_weights_give_the_zoo_logits(name):
    inputs = torch.randn(
        2,
        3,
        32,
        32,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(1))
    reference = zoo.reference_run(name, inputs)
    # The functional statement is the zoo's network, by its size.
    assert reference.num_params == zoo.ZOO_PARAMS[name]

    model = zoo.build_model(name).double().eval()
    converted = convert_repdistiller_checkpoint(
        zoo.released_checkpoint(reference.state_dict), name,
        model.state_dict())
    model.load_state_dict(converted['state_dict'], strict=True)
    with torch.no_grad():
        logits = model(inputs, mode='tensor')
    torch.testing.assert_close(logits, reference.logits, rtol=0, atol=1e-10)


def _conv_std_errors(model: nn.Module) -> list:
    """Relative error of each large conv's weight std against He-normal
    fan-out, the zoo's init for these families."""
    errors = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.weight.numel() >= 4096:
            fan_out = module.out_channels * module.kernel_size[0] * \
                module.kernel_size[1]
            expected = (2 / fan_out)**0.5
            errors.append(abs(module.weight.std().item() / expected - 1))
    return errors


@pytest.mark.parametrize(
    'name', ['resnet56', 'resnet50', 'wrn_40_2', 'vgg13', 'mobilenetv2'])
def test_initialisation_follows_the_zoo(name):
    torch.manual_seed(0)
    model = zoo.build_model(name)
    model.init_weights()
    errors = _conv_std_errors(model.backbone)
    assert errors and max(errors) < 0.1
    for module in model.backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            # the zoo does not zero-init the last BN of residual blocks
            assert torch.equal(module.weight, torch.ones_like(module.weight))
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            assert not module.bias.any()


@pytest.mark.parametrize('build, message', [
    (lambda: CifarResNet(depth=21), 'invalid depth 21'),
    (lambda: CifarWideResNet(depth=17), 'got 17'),
    (lambda: CifarVGG(depth=12), 'invalid depth 12'),
])
def test_invalid_depth_is_refused(build, message):
    with pytest.raises((KeyError, ValueError), match=message):
        build()
