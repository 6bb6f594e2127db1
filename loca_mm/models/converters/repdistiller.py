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

HEAD_PREFIX = 'head.fc.'
BACKBONE_PREFIX = 'backbone.'
DDP_PREFIX = 'module.'


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


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the target model."""


def extract_state_dict(checkpoint: Mapping) -> Dict[str, Tensor]:
    """The weights of a zoo checkpoint, a bare state dict, or either saved
    from a ``DataParallel``/DDP model (``module.`` prefixes).

    Args:
        checkpoint (Mapping): what ``torch.load`` returned.

    Returns:
        dict: key -> tensor, without the ``module.`` prefix.

    Raises:
        CheckpointMismatchError: if no state dict is found.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(
            f'expected a dict checkpoint, got {type(checkpoint).__name__}')
    state_dict = checkpoint.get('model', checkpoint)
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise CheckpointMismatchError(
            "expected a {'model': state_dict, ...} checkpoint or a state "
            f'dict, got {type(state_dict).__name__} under '
            f"{'model' if 'model' in checkpoint else 'the top level'}")
    not_tensors = [k for k, v in state_dict.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise CheckpointMismatchError(
            f'not a state dict: non-tensor entries {not_tensors[:8]} '
            "(a checkpoint should keep its weights under 'model')")
    if all(key.startswith(DDP_PREFIX) for key in state_dict):
        return {k[len(DDP_PREFIX):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _map_key(key: str, layout: _Layout) -> str:
    """loca_mm's name for the zoo key ``key``."""
    if key.startswith(layout.classifier):
        return HEAD_PREFIX + key[len(layout.classifier):]
    for pattern, replacement in layout.renames:
        key = re.sub(pattern, replacement, key)
    return BACKBONE_PREFIX + key


def _listed(items: list, limit: int = 10) -> str:
    """One item a line, at most ``limit`` of them."""
    more = f' ... ({len(items) - limit} more)' if len(items) > limit else ''
    return '\n  '.join(items[:limit]) + more


def convert_repdistiller_state_dict(
        state_dict: Mapping[str, Tensor], model_name: str,
        target: Mapping[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """Rename a zoo state dict to loca_mm's keys and check it fits.

    Args:
        state_dict (Mapping[str, Tensor]): the zoo's weights
            (:func:`extract_state_dict`).
        model_name (str): a key of :data:`ZOO_MODELS`, e.g. ``'resnet56'``.
        target (Mapping[str, Tensor]): ``state_dict()`` of the loca_mm
            model the weights are for; it fixes the expected keys and
            shapes.

    Returns:
        OrderedDict: the weights under the target's keys, in its order.

    Raises:
        KeyError: for an unknown ``model_name``.
        CheckpointMismatchError: naming every source key that maps to no
            target key, every target key left without a weight, every shape
            that differs and any two source keys that map to one key.
    """
    if model_name not in ZOO_MODELS:
        raise KeyError(f'unknown zoo model {model_name!r}; expected one of '
                       f'{sorted(ZOO_MODELS)}')
    layout = ZOO_MODELS[model_name]
    mapped, duplicated = {}, []
    for key, value in state_dict.items():
        new_key = _map_key(key, layout)
        if new_key in mapped:
            duplicated.append(f'{mapped[new_key][0]} and {key} (as {new_key})')
        mapped[new_key] = (key, value)
    unexpected = [
        f'{key} (as {new_key})' for new_key, (key, _) in mapped.items()
        if new_key not in target
    ]
    mis_shaped = [
        f'{key} (as {new_key}): checkpoint {tuple(value.shape)}, '
        f'model {tuple(target[new_key].shape)}'
        for new_key, (key, value) in mapped.items()
        if new_key in target and value.shape != target[new_key].shape
    ]
    missing = [key for key in target if key not in mapped]
    problems = [
        f'{title} ({len(keys)}):\n  {_listed(keys)}'
        for title, keys in (('keys the model does not have', unexpected),
                            ('shapes that do not fit', mis_shaped),
                            ('model keys missing from the checkpoint',
                             missing), ('keys mapped twice', duplicated))
        if keys
    ]
    if problems:
        raise CheckpointMismatchError(
            f'the checkpoint does not fit {model_name}:\n' +
            '\n'.join(problems))
    return OrderedDict((key, mapped[key][1]) for key in target)


def _as_number(value) -> Optional[float]:
    """A plain number from the zoo's metadata (``accuracy`` is often a
    0-dim tensor), so the converted file loads with ``weights_only``."""
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    if isinstance(value, (int, float)):
        return value
    return None


def convert_repdistiller_checkpoint(checkpoint: Mapping, model_name: str,
                                    target: Mapping[str, Tensor]) -> dict:
    """Turn a loaded zoo checkpoint into an mmpretrain checkpoint.

    Args:
        checkpoint (Mapping): what ``torch.load`` returned for a zoo file
            (or a bare state dict).
        model_name (str): a key of :data:`ZOO_MODELS`.
        target (Mapping[str, Tensor]): ``state_dict()`` of the loca_mm
            model built from ``configs/_base_/models/cifar100/<model_name>``.

    Returns:
        dict: ``{'state_dict': ..., 'meta': ...}``; ``meta`` records the
        source format, the model and the zoo's ``epoch``/``accuracy`` when
        present. The optimizer state is dropped.
    """
    state_dict = convert_repdistiller_state_dict(
        extract_state_dict(checkpoint), model_name, target)
    meta = dict(converted_from='RepDistiller/CRD/mdistiller', model=model_name)
    if 'model' in checkpoint:
        for field in ('epoch', 'accuracy'):
            number = _as_number(checkpoint.get(field))
            if number is not None:
                meta[field] = number
    return dict(state_dict=state_dict, meta=meta)
