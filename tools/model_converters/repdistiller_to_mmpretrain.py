"""Convert a CRD / RepDistiller / mdistiller CIFAR-100 checkpoint to
mmpretrain.

    python tools/model_converters/repdistiller_to_mmpretrain.py SRC DST \
        --model NAME [--config CONFIG]

SRC is a released ``ckpt_epoch_240.pth`` (``{'model': state_dict, 'epoch',
'accuracy', 'optimizer'}``), or a bare state dict; ``module.`` prefixes are
accepted. NAME is one of the CIFAR-100 model configs in
``configs/_base_/models/cifar100/`` (``resnet56``, ``wrn_40_2``, ``vgg13``,
``resnet50``, ``mobilenetv2``, ``shufflev1`` ...); the model built from it
fixes the expected keys and shapes. DST (``{'state_dict', 'meta'}``) loads
strictly into that config's ``ImageClassifier``, e.g. as ``teacher_ckpt`` of
a distillation config. Teachers and students convert alike.
"""
import argparse
import os
import os.path as osp

# loca_mm first: it repairs the stack for current PyTorch and registers the
# CIFAR-100 zoo backbones.
import loca_mm  # noqa: F401,I001
import torch
from loca_mm.models.converters import (ZOO_MODELS,
                                       convert_repdistiller_checkpoint)
from mmengine.config import Config
from mmpretrain.registry import MODELS

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    '_base_', 'models', 'cifar100')


def convert(src: str, dst: str, model_name: str, config: str) -> dict:
    """Convert ``src`` to ``dst`` for the model of ``config``.

    Args:
        src (str): the zoo checkpoint.
        dst (str): where to write the mmpretrain checkpoint.
        model_name (str): zoo model name, a key of ``ZOO_MODELS``.
        config (str): config file whose ``model`` the weights are for.

    Returns:
        dict: the ``meta`` written with the weights.
    """
    target = MODELS.build(Config.fromfile(config).model).state_dict()
    checkpoint = torch.load(src, map_location='cpu', weights_only=True)
    converted = convert_repdistiller_checkpoint(checkpoint, model_name, target)
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save(converted, dst)
    return converted['meta']


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description='Convert a CRD/RepDistiller/mdistiller CIFAR-100 '
        'checkpoint to an mmpretrain checkpoint')
    parser.add_argument('src', help='checkpoint of the zoo (.pth)')
    parser.add_argument('dst', help='output mmpretrain checkpoint (.pth)')
    parser.add_argument(
        '--model',
        required=True,
        choices=sorted(ZOO_MODELS),
        help='the network, named as its model config')
    parser.add_argument(
        '--config',
        help='model config (default: configs/_base_/models/cifar100/'
        '<model>.py)')
    args = parser.parse_args(argv)
    config = args.config or osp.join(CONFIG_DIR, f'{args.model}.py')
    meta = convert(args.src, args.dst, args.model, config)
    print(f'wrote {args.dst} for {config}: {meta}')


if __name__ == '__main__':
    main()
