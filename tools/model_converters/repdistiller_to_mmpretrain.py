"""Convert a CRD / RepDistiller / mdistiller CIFAR-100 checkpoint to
mmpretrain.

    python tools/model_converters/repdistiller_to_mmpretrain.py SRC DST \
        --model NAME [--config CONFIG] [--force]

SRC is a released ``ckpt_epoch_240.pth`` (``{'model': state_dict, 'epoch',
'accuracy', 'optimizer'}``, possibly with the training options as an
``argparse.Namespace``), or a bare state dict; ``module.`` prefixes are
accepted, and so are BatchNorm layers without ``num_batches_tracked``. SRC
is read in torch's safe ``weights_only`` mode: tensors, numbers, containers
and ``argparse.Namespace``, nothing that could run code. NAME is one of the
CIFAR-100 model configs in ``configs/_base_/models/cifar100/``
(``resnet56``, ``wrn_40_2``, ``vgg13``, ``resnet50``, ``mobilenetv2``,
``shufflev1`` ...); the model built from it fixes the expected keys and
shapes. DST (``{'state_dict', 'meta'}``) loads strictly into that config's
``ImageClassifier``, e.g. as ``teacher_ckpt`` of a distillation config.
Teachers and students convert alike. An existing DST is replaced only with
``--force``; DST may never be SRC.
"""
import argparse
import os.path as osp

# loca_mm first: it repairs the stack for current PyTorch and registers the
# CIFAR-100 zoo backbones.
import loca_mm  # noqa: F401,I001
from loca_mm.models.converters import (ZOO_MODELS,
                                       convert_repdistiller_checkpoint)
from loca_mm.utils.checkpoint import (load_checkpoint_file,
                                      save_checkpoint_file)
from mmengine.config import Config
from mmpretrain.registry import MODELS

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    '_base_', 'models', 'cifar100')
# Some releases also save the training options (an argparse.Namespace of
# strings and numbers); the safe loader may build that one class.
RELEASE_GLOBALS = (argparse.Namespace, )


def convert(src: str,
            dst: str,
            model_name: str,
            config: str,
            force: bool = False) -> dict:
    """Convert ``src`` to ``dst`` for the model of ``config``.

    Args:
        src (str): the zoo checkpoint.
        dst (str): where to write the mmpretrain checkpoint.
        model_name (str): zoo model name, a key of ``ZOO_MODELS``.
        config (str): config file whose ``model`` the weights are for.
        force (bool): replace an existing ``dst``.

    Returns:
        dict: the ``meta`` written with the weights.
    """
    target = MODELS.build(Config.fromfile(config).model).state_dict()
    checkpoint = load_checkpoint_file(src, safe_globals=RELEASE_GLOBALS)
    converted = convert_repdistiller_checkpoint(checkpoint, model_name, target,
                                                src)
    save_checkpoint_file(converted, dst, src, force)
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
    parser.add_argument(
        '--force', action='store_true', help='replace an existing DST')
    args = parser.parse_args(argv)
    config = args.config or osp.join(CONFIG_DIR, f'{args.model}.py')
    meta = convert(args.src, args.dst, args.model, config, args.force)
    print(f'wrote {args.dst} for {config}: {meta}')


if __name__ == '__main__':
    main()
