"""Reading, checking and writing checkpoints: one place for every loca_mm
tool and model that touches a checkpoint file.

* :func:`load_checkpoint_file` loads a local file with torch's safe
  ``weights_only`` mode and names the file when it is damaged or holds
  objects that mode refuses (torch's own messages advise
  ``weights_only=False`` for both, which is wrong for a corrupt file and
  unsafe for an untrusted one). loca_mm registers it as mmengine's loader
  of local paths, so ``load_from``, ``resume``, ``teacher_ckpt`` and
  ``tools/test.py`` report a damaged file the same way.
* :func:`state_dict_of` finds the weights in the checkpoint layouts in use.
* :func:`check_fit` compares weights with a model: one error type, one
  report of missing, unexpected and mis-shaped keys.
* :func:`sub_state_dict` takes the student (``architecture.``) or the
  teacher (``teacher.``) out of a distillation checkpoint.
* :func:`save_checkpoint_file` writes a converter's output, never over an
  existing file unasked and never over its own input.
"""
import os
import os.path as osp
import pickle
import re
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    'STUDENT_PREFIX', 'TEACHER_PREFIX', 'DamagedCheckpointError',
    'UnsafeCheckpointError', 'CheckpointMismatchError',
    'load_checkpoint_file', 'load_from_local', 'state_dict_of', 'check_fit',
    'load_state_dict_strictly', 'load_model_weights', 'sub_state_dict',
    'is_distillation_state_dict', 'save_checkpoint_file'
]

#: key prefixes of the student and the teacher in a distillation checkpoint
STUDENT_PREFIX = 'architecture.'
TEACHER_PREFIX = 'teacher.'
# saved from a DataParallel/DDP-wrapped model
DDP_PREFIX = 'module.'
# How many keys of each kind a mismatch report lists.
REPORT_LIMIT = 10


class DamagedCheckpointError(RuntimeError):
    """A file is damaged or not a checkpoint: ``torch.load`` cannot parse
    it.

    Attributes:
        filename (str): the file.
    """

    def __init__(self, filename: str, message: str) -> None:
        super().__init__(message)
        self.filename = filename


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A well-formed checkpoint holds a class or function outside the set
    that torch's safe ``weights_only`` mode loads.

    Attributes:
        filename (str): the file.
    """

    def __init__(self, filename: str, message: str) -> None:
        super().__init__(message)
        self.filename = filename


class CheckpointMismatchError(RuntimeError):
    """A checkpoint holds no weights, or its weights do not fit the model."""


# torch's safe unpickler reports what it refused after "WeightsUnpickler
# error:"; it names a refused class or function "GLOBAL module.name", and
# fails on bytes that are no pickle with "Unsupported operand".
_UNPICKLER_REASON = re.compile(r'WeightsUnpickler error:\s*([^\n]+)')
_REFUSED_GLOBAL = re.compile(r'GLOBAL ([\w.]+)')


def load_checkpoint_file(filename: str,
                         map_location='cpu',
                         safe_globals: Sequence = ()) -> object:
    """``torch.load`` a local file in the safe ``weights_only`` mode.

    Args:
        filename (str): path of the checkpoint.
        map_location: as for ``torch.load``.
        safe_globals (Sequence): classes the file may hold beyond tensors,
            containers, numbers and what :mod:`loca_mm.compat` allow-lists
            for mmengine checkpoints (e.g. ``argparse.Namespace``).

    Returns:
        object: what the file holds.

    Raises:
        FileNotFoundError: naming the missing file.
        DamagedCheckpointError: naming the file, when it is truncated,
            garbage or not written by ``torch.save``.
        UnsafeCheckpointError: naming the file and the class, when it
            holds a class or function outside the safe set.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _UNPICKLER_REASON.search(str(error))
        reason = reason.group(1).strip() if reason else ''
        if not reason or reason.startswith('Unsupported operand'):
            raise _damaged(filename, reason or error) from None
        refused = _REFUSED_GLOBAL.search(reason)
        what = (f'an object of {refused.group(1)}, which'
                if refused else f'what ({reason[:160]})')
        raise UnsafeCheckpointError(
            filename, f'checkpoint {filename} holds {what} torch.load\'s '
            'safe weights_only mode refuses: unpickling it could run code. '
            'Load only files you trust, with a tool that allows that one '
            'class.') from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError,
            IndexError) as error:
        # What torch raises for a truncated zip archive (RuntimeError), an
        # empty or truncated legacy file (EOFError) and bytes that are no
        # pickle at all (KeyError, ValueError, ...).
        raise _damaged(filename, error) from None


def _damaged(filename: str, error) -> DamagedCheckpointError:
    """The error for a file that torch.load cannot parse; torch's own
    message is cut at its first sentence (what follows is advice for
    other cases)."""
    reason = str(error).strip().split('\n')[0].split('. ')[0][:160]
    if isinstance(error, Exception):
        reason = f'{type(error).__name__}: {reason}'.rstrip(': ')
    return DamagedCheckpointError(
        filename,
        f'checkpoint {filename} ({osp.getsize(filename)} bytes) is damaged '
        f'or not a checkpoint: torch.load cannot read it ({reason}). A '
        'file cut short by an interrupted save or copy reads like this; '
        'use an intact copy.')


def state_dict_of(checkpoint: object,
                  source: str = 'the checkpoint') -> Dict[str, Tensor]:
    """The weights in a loaded checkpoint.

    Accepted: mmengine/mmpretrain ``{'state_dict': ..., 'meta': ...}``,
    RepDistiller/mdistiller ``{'model': ..., 'epoch': ...}``, or a bare
    state dict; a ``module.`` prefix on every key (a model saved inside
    ``DataParallel``/DDP) is removed.

    Args:
        checkpoint (object): what the file held.
        source (str): the checkpoint's name in error messages.

    Returns:
        dict: key -> tensor.

    Raises:
        CheckpointMismatchError: if there is no state dict.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(
            f'{source} holds a {type(checkpoint).__name__}, not a dict of '
            'weights')
    state_dict = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            state_dict = checkpoint[key]
            break
    not_tensors = [k for k, v in state_dict.items() if not torch.is_tensor(v)]
    if not state_dict or not_tensors:
        raise CheckpointMismatchError(
            f'{source} holds no state dict: expected a dict of tensors, '
            "alone or under 'state_dict' or 'model'; found "
            f'{len(state_dict)} entries, not tensors: {not_tensors[:8]}')
    if all(key.startswith(DDP_PREFIX) for key in state_dict):
        return {k[len(DDP_PREFIX):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _listed(items: List[str]) -> str:
    """One item a line, at most ``REPORT_LIMIT`` of them."""
    more = (f'\n  ... ({len(items) - REPORT_LIMIT} more)'
            if len(items) > REPORT_LIMIT else '')
    return '\n  '.join(items[:REPORT_LIMIT]) + more


def _format_hint(state_dict: Mapping[str, Tensor]) -> str:
    """What to do with a checkpoint of a recognisable other layout."""
    if is_distillation_state_dict(state_dict):
        return ('\nThis is a distillation checkpoint (architecture.* and '
                'teacher.* keys): extract the student with tools/'
                'model_converters/convert_kd_ckpt_to_student.py.')
    if not any(k.startswith(('backbone.', 'head.', 'neck.'))
               for k in state_dict):
        return ('\nIts keys are not an mmpretrain classifier\'s (backbone.*, '
                'head.*): a RepDistiller/mdistiller release converts with '
                'tools/model_converters/repdistiller_to_mmpretrain.py.')
    return ''


def check_fit(state_dict: Mapping[str, Tensor],
              expected: Mapping[str, Tensor],
              source: str,
              target: str,
              source_names: Optional[Mapping[str, str]] = None) -> None:
    """Refuse weights whose keys or shapes differ from a model's.

    Args:
        state_dict (Mapping[str, Tensor]): the weights, under the model's
            key names.
        expected (Mapping[str, Tensor]): the model's ``state_dict()``.
        source (str): the weights' name in the report, e.g. the file.
        target (str): the model's name in the report.
        source_names (Mapping[str, str], optional): key -> the key it had in
            the file, for weights that were renamed on the way.

    Raises:
        CheckpointMismatchError: listing the model keys missing from the
            weights, the keys the model does not have and the shapes that
            differ.
    """
    names = source_names or {}

    def named(key):
        return f'{names[key]} (as {key})' if key in names else key

    missing = [k for k in expected if k not in state_dict]
    unexpected = [named(k) for k in state_dict if k not in expected]
    mis_shaped = [
        f'{named(k)}: checkpoint {tuple(v.shape)}, model '
        f'{tuple(expected[k].shape)}' for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or mis_shaped):
        return
    kinds = (('model keys missing from the checkpoint', missing),
             ('keys the model does not have', unexpected),
             ('shapes that do not fit', mis_shaped))
    sections = [
        f'{title} ({len(keys)}):\n  {_listed(keys)}' for title, keys in kinds
        if keys
    ]
    hint = _format_hint(state_dict) if unexpected else ''
    raise CheckpointMismatchError(
        f'{source} does not fit {target} ({len(missing)} missing, '
        f'{len(unexpected)} unexpected, {len(mis_shaped)} mis-shaped keys):\n'
        + '\n'.join(sections) + hint)


def load_state_dict_strictly(model: nn.Module,
                             state_dict: Mapping[str, Tensor], source: str,
                             target: str) -> None:
    """:func:`check_fit`, then load every weight into ``model``."""
    check_fit(state_dict, model.state_dict(), source, target)
    model.load_state_dict(state_dict, strict=True)


def load_model_weights(model: nn.Module,
                       filename: str,
                       source: str,
                       target: str,
                       distillation_part: Optional[str] = None,
                       prefix: Optional[str] = None) -> None:
    """Load a checkpoint file strictly into ``model``.

    Args:
        model (nn.Module): the built model.
        filename (str): local path or URL (read through mmengine's
            ``CheckpointLoader``).
        source (str): the file's name in error messages.
        target (str): the model's name in error messages.
        distillation_part (str, optional): :data:`TEACHER_PREFIX` or
            :data:`STUDENT_PREFIX`: from a distillation checkpoint, load
            that part. Without it a distillation checkpoint does not fit.
        prefix (str, optional): load only the weights under this key
            prefix, without it (as the ``prefix`` of mmengine's
            ``Pretrained`` initialisation).

    Raises:
        CheckpointMismatchError: if the weights do not fit.
        DamagedCheckpointError: if the file cannot be read.
    """
    from mmengine.runner import CheckpointLoader
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    state_dict = state_dict_of(checkpoint, source)
    if prefix:
        prefix = prefix if prefix.endswith('.') else f'{prefix}.'
        state_dict = sub_state_dict(state_dict, prefix, source)
        source = f'{source} ({prefix}* weights)'
    elif distillation_part and is_distillation_state_dict(state_dict):
        state_dict = sub_state_dict(state_dict, distillation_part, source)
        source = f'{source} ({distillation_part}* weights)'
    load_state_dict_strictly(model, state_dict, source, target)


def sub_state_dict(state_dict: Mapping[str, Tensor], prefix: str,
                   source: str = 'the checkpoint') -> Dict[str, Tensor]:
    """The weights under ``prefix``, without it.

    Args:
        state_dict (Mapping[str, Tensor]): e.g. a distillation
            algorithm's weights.
        prefix (str): e.g. :data:`STUDENT_PREFIX` or :data:`TEACHER_PREFIX`.
        source (str): the checkpoint's name in the error message.

    Raises:
        CheckpointMismatchError: if no key starts with ``prefix``.
    """
    part = {
        key[len(prefix):]: value
        for key, value in state_dict.items() if key.startswith(prefix)
    }
    if not part:
        sample = ', '.join(list(state_dict)[:5])
        what = ('is not a distillation checkpoint: '
                if prefix in (STUDENT_PREFIX, TEACHER_PREFIX) else '')
        raise CheckpointMismatchError(
            f'{source} {what}no weights start with {prefix!r} (first keys: '
            f'{sample})')
    return part


def is_distillation_state_dict(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether the weights are a distillation algorithm's (student and
    teacher)."""
    return any(k.startswith(STUDENT_PREFIX) for k in state_dict) and any(
        k.startswith(TEACHER_PREFIX) for k in state_dict)


def save_checkpoint_file(checkpoint: dict,
                         dst: str,
                         src: str,
                         force: bool = False) -> None:
    """Write a converted checkpoint to ``dst``.

    The file appears complete or not at all (written beside ``dst``, then
    renamed), so an interrupted conversion leaves no damaged output.

    Args:
        checkpoint (dict): what to save.
        dst (str): the output path.
        src (str): the converted file; ``dst`` may never be it.
        force (bool): replace an existing ``dst``.

    Raises:
        FileExistsError: if ``dst`` exists and ``force`` is False, or if
            ``dst`` is ``src``.
    """
    if osp.realpath(dst) == osp.realpath(src) or (
            osp.exists(dst) and osp.samefile(dst, src)):
        raise FileExistsError(
            f'output {dst} is the input {src}: write the converted '
            'checkpoint to another file (the input stays as it is)')
    if osp.exists(dst) and not force:
        raise FileExistsError(
            f'output {dst} exists; pass --force to replace it')
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    partial = f'{dst}.partial'
    torch.save(checkpoint, partial)
    os.replace(partial, dst)


def load_from_local(filename: str, map_location=None) -> object:
    """mmengine's ``CheckpointLoader`` scheme for local paths, with
    :func:`load_checkpoint_file`'s errors."""
    return load_checkpoint_file(filename, map_location=map_location)
