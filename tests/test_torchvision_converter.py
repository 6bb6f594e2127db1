"""torchvision ResNet weights converted to mmpretrain give torchvision's
logits; weights of another depth are refused with the keys named."""
import runpy
import sys

import pytest
import torch

import loca_mm  # noqa: F401  (repairs the torchvision import first)
import torchvision
from mmengine.config import Config
from mmpretrain.registry import MODELS

from _support import REPO
from loca_mm.utils.torchvision_weights import torchvision_resnet_to_mmpretrain

TOOL = REPO / 'tools' / 'model_converters' / 'torchvision_to_mmpretrain.py'
MODEL = REPO / 'configs' / '_base_' / 'models' / 'imagenet' / 'resnet18.py'


def random_torchvision_resnet18() -> torch.nn.Module:
    """A randomly initialised torchvision ResNet-18 whose BNs have
    non-trivial statistics and affine weights, in eval mode."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return net.double().eval()


def run_tool(*args, monkeypatch):
    monkeypatch.setattr(sys, 'argv', ['torchvision_to_mmpretrain.py', *args])
    runpy.run_path(str(TOOL), run_name='__main__')


def test_converted_resnet18_gives_torchvisions_logits(tmp_path, monkeypatch):
    net = random_torchvision_resnet18()
    src, dst = tmp_path / 'resnet18-tv.pth', tmp_path / 'out' / 'resnet18.pth'
    torch.save(net.state_dict(), src)
    run_tool(str(src), str(dst), '--model', 'resnet18',
             monkeypatch=monkeypatch)

    model = MODELS.build(Config.fromfile(str(MODEL)).model).double().eval()
    model.load_state_dict(torch.load(dst)['state_dict'], strict=True)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)
        logits = model(x, mode='tensor')
    assert expected.std() > 0.1  # the comparison is not between zeros
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-10)

    with pytest.raises(SystemExit):  # DST exists, no --force
        run_tool(str(src), str(dst), '--model', 'resnet18',
                 monkeypatch=monkeypatch)


def test_weights_of_another_network_are_refused(tmp_path, monkeypatch):
    src = tmp_path / 'resnet34-tv.pth'
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), src)
    with pytest.raises(RuntimeError, match='layer1.2.conv1.weight'):
        run_tool(str(src), str(tmp_path / 'x.pth'), '--model', 'resnet18',
                 monkeypatch=monkeypatch)
    assert not (tmp_path / 'x.pth').exists()
    with pytest.raises(ValueError, match="no 'fc.weight'"):
        torchvision_resnet_to_mmpretrain({'conv1.weight': torch.zeros(1)})
