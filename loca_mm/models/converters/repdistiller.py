"""Convert CIFAR-100 checkpoints of the CRD / RepDistiller / mdistiller zoo
to loca_mm's mmpretrain ``ImageClassifier`` models.

The zoo saves ``{'model': state_dict, 'epoch', 'accuracy', 'optimizer'}``.
loca_mm's backbones reuse the zoo's module names wherever they are valid
Python names (see :mod:`loca_mm.models.backbones.cifar`), so a key maps by
moving the final linear layer to ``head.fc.``, prefixing the rest with
``backbone.`` and applying a few per-family renames. The result is checked
key by key and shape by shape against the target model's state dict: a
checkpoint that does not fit is an error naming the keys, never a partial
load.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from loca_mm.utils.checkpoint import (CheckpointMismatchError, check_fit,
                                      state_dict_of)

HEAD_PREFIX = 'head.fc.'
BACKBONE_PREFIX = 'backbone.'
BN_COUNT = 'num_batches_tracked'


class _Layout(NamedTuple):
    """How one family's zoo keys map to loca_mm's.

    Attributes:
        classifier (str): key prefix of the zoo's final linear layer.
        renames (tuple): ``(pattern, replacement)`` regex substitutions
            applied, in order, to the other keys.
    """
    classifier: str
    renames: Tuple[Tuple[str, str], ...] = ()


_CIFAR_RESNET = _Layout('fc.')
# WRN stages are ``block{i}.layer.{j}`` (a wrapper module) in the zoo and
# plain Sequentials here; ``convShortcut`` is not a PEP 8 attribute name.
_WRN = _Layout('fc.', ((r'^(block\d)\.layer\.', r'\1.'),
                       (r'\.convShortcut\.', '.shortcut.')))
_VGG = _Layout('classifier.')
_MOBILENET_V2 = _Layout('classifier.0.')  # a Sequential around the Linear
_SHUFFLENET = _Layout('linear.')
# The zoo's ResNet18/50 name projections ``shortcut``; mmpretrain's
# ResNet_CIFAR names them ``downsample``.
_RESNET = _Layout('linear.', ((r'\.shortcut\.', '.downsample.'), ))

_FAMILIES = (
    (('resnet8', 'resnet14', 'resnet20', 'resnet32', 'resnet44', 'resnet56',
      'resnet110', 'resnet8x4', 'resnet32x4'), _CIFAR_RESNET),
    (('wrn_16_1', 'wrn_16_2', 'wrn_40_1', 'wrn_40_2'), _WRN),
    (('vgg8', 'vgg11', 'vgg13', 'vgg16', 'vgg19'), _VGG),
    (('mobilenetv2', ), _MOBILENET_V2),
    (('shufflev1', 'shufflev2'), _SHUFFLENET),
    (('resnet18', 'resnet50'), _RESNET),
)
#: loca_mm model-config name -> key layout of the zoo's checkpoint
ZOO_MODELS: Dict[str, _Layout] = {
    name: layout
    for names, layout in _FAMILIES
    for name in names
}


def _map_key(key: str, layout: _Layout) -> str:
    """loca_mm's name for the zoo key ``key``."""
    if key.startswith(layout.classifier):
        return HEAD_PREFIX + key[len(layout.classifier):]
    for pattern, replacement in layout.renames:
        key = re.sub(pattern, replacement, key)
    return BACKBONE_PREFIX + key


def convert_repdistiller_state_dict(
        state_dict: Mapping[str, Tensor],
        model_name: str,
        target: Mapping[str, Tensor],
        source: str = 'the checkpoint') -> 'OrderedDict[str, Tensor]':
    """Rename a zoo state dict to loca_mm's keys and check it fits.

    BatchNorm layers saved by PyTorch before 0.4.1 have no
    ``num_batches_tracked``; it is filled with 0, what a fresh
    ``BatchNorm`` holds and what PyTorch itself fills in when it loads such
    a layer (the count only matters for ``momentum=None``, which the zoo's
    and mmpretrain's BN layers do not use).

    Args:
        state_dict (Mapping[str, Tensor]): the zoo's weights
            (:func:`loca_mm.utils.checkpoint.state_dict_of`).
        model_name (str): a key of :data:`ZOO_MODELS`, e.g. ``'resnet56'``.
        target (Mapping[str, Tensor]): ``state_dict()`` of the loca_mm
            model the weights are for; it fixes the expected keys and
            shapes.
        source (str): the checkpoint's name in error messages.

    Returns:
        OrderedDict: the weights under the target's keys, in its order.

    Raises:
        KeyError: for an unknown ``model_name``.
        CheckpointMismatchError: naming any two source keys that map to one
            key, else every source key that maps to no target key, every
            target key left without a weight and every shape that differs.
    """
    if model_name not in ZOO_MODELS:
        raise KeyError(f'unknown zoo model {model_name!r}; expected one of '
                       f'{sorted(ZOO_MODELS)}')
    layout = ZOO_MODELS[model_name]
    mapped, source_names, duplicated = {}, {}, []
    for key, value in state_dict.items():
        new_key = _map_key(key, layout)
        if new_key in mapped:
            duplicated.append(
                f'{source_names[new_key]} and {key} (as {new_key})')
        mapped[new_key], source_names[new_key] = value, key
    if duplicated:
        raise CheckpointMismatchError(
            f'{source} does not fit {model_name}: keys mapped twice '
            f'({len(duplicated)}):\n  ' + '\n  '.join(duplicated))
    for key in target:
        bn_layer = key[:-len(BN_COUNT)]
        if (key.endswith(BN_COUNT) and key not in mapped
                and bn_layer + 'running_mean' in mapped):
            mapped[key] = torch.zeros_like(target[key])
    check_fit(mapped, target, source, model_name, source_names)
    return OrderedDict((key, mapped[key]) for key in target)


def _as_number(value) -> Optional[float]:
    """A plain number from the zoo's metadata (``accuracy`` is often a
    0-dim tensor), so the converted file loads with ``weights_only``."""
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    if isinstance(value, (int, float)):
        return value
    return None


def convert_repdistiller_checkpoint(checkpoint: Mapping,
                                    model_name: str,
                                    target: Mapping[str, Tensor],
                                    source: str = 'the checkpoint') -> dict:
    """Turn a loaded zoo checkpoint into an mmpretrain checkpoint.

    Args:
        checkpoint (Mapping): what ``torch.load`` returned for a zoo file
            (or a bare state dict, with or without ``module.`` prefixes).
        model_name (str): a key of :data:`ZOO_MODELS`.
        target (Mapping[str, Tensor]): ``state_dict()`` of the loca_mm
            model built from ``configs/_base_/models/cifar100/<model_name>``.
        source (str): the checkpoint's name in error messages.

    Returns:
        dict: ``{'state_dict': ..., 'meta': ...}``; ``meta`` records the
        source format, the model and the zoo's ``epoch``/``accuracy`` when
        present. The optimizer state and anything else is dropped.

    Raises:
        CheckpointMismatchError: for an mmengine checkpoint (weights under
            ``'state_dict'``: converted already), no state dict, or weights
            that do not fit.
    """
    if isinstance(checkpoint, Mapping) and 'state_dict' in checkpoint:
        raise CheckpointMismatchError(
            f"{source} keeps its weights under 'state_dict': an mmengine/"
            'mmpretrain checkpoint, not a RepDistiller/mdistiller one (those '
            "keep them under 'model'); it needs no conversion")
    state_dict = convert_repdistiller_state_dict(
        state_dict_of(checkpoint, source), model_name, target, source)
    meta = dict(converted_from='RepDistiller/CRD/mdistiller', model=model_name)
    if 'model' in checkpoint:
        for field in ('epoch', 'accuracy'):
            number = _as_number(checkpoint.get(field))
            if number is not None:
                meta[field] = number
    return dict(state_dict=state_dict, meta=meta)
