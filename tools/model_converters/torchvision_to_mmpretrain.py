"""Convert torchvision's ImageNet ResNet weights to mmpretrain.

    python tools/model_converters/torchvision_to_mmpretrain.py SRC DST \
        --model {resnet18,resnet34,resnet50} [--config CONFIG] [--force]

SRC is a torchvision state dict, e.g. the ImageNet weights the DKD release
(mdistiller) distils from (https://download.pytorch.org/models/...).
The weights are loaded strictly into the model of CONFIG (default
``configs/_base_/models/imagenet/<model>.py``) and written as
``{'state_dict', 'meta'}`` to DST, a ``model.teacher_ckpt`` for the ImageNet
distillation configs. An existing DST is kept unless --force.
"""
import argparse
import os
import os.path as osp

# loca_mm first: it repairs the stack for current PyTorch.
import loca_mm  # noqa: F401,I001
import torch
from loca_mm.utils.torchvision_weights import torchvision_resnet_to_mmpretrain
from mmengine.config import Config
from mmpretrain.registry import MODELS

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    '_base_', 'models', 'imagenet')


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Convert torchvision's ImageNet ResNet weights to an "
        'mmpretrain checkpoint')
    parser.add_argument('src', help='torchvision state dict (.pth)')
    parser.add_argument('dst', help='output mmpretrain checkpoint (.pth)')
    parser.add_argument(
        '--model', required=True, choices=['resnet18', 'resnet34', 'resnet50'])
    parser.add_argument(
        '--config',
        help='model config (default: configs/_base_/models/imagenet/'
        '<model>.py)')
    parser.add_argument(
        '--force', action='store_true', help='overwrite an existing DST')
    args = parser.parse_args(argv)
    if osp.exists(args.dst) and not args.force:
        parser.error(f'{args.dst} exists; pass --force to overwrite it')
    config = args.config or osp.join(CONFIG_DIR, f'{args.model}.py')
    model = MODELS.build(Config.fromfile(config).model)
    state_dict = torchvision_resnet_to_mmpretrain(
        torch.load(args.src, map_location='cpu', weights_only=True))
    # Raises, naming missing / unexpected keys and shape mismatches.
    model.load_state_dict(state_dict, strict=True)
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    meta = dict(source='torchvision', model=args.model, config=config)
    torch.save(dict(state_dict=model.state_dict(), meta=meta), args.dst)
    print(f'wrote {args.dst} for {config}')


if __name__ == '__main__':
    main()
