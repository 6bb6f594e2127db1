"""Single-teacher distillation that refuses a teacher checkpoint that does
not fit the teacher model."""
from typing import Dict, Optional, Union

from mmengine.model import BaseModel
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from mmrazor.models.algorithms import SingleTeacherDistill
from mmrazor.registry import MODELS


def _state_dict_of(checkpoint: dict) -> dict:
    """The weights inside an mmengine/mmpretrain or a plain checkpoint."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, dict):
        raise TypeError(f'no state dict in checkpoint: {type(state_dict)}')
    prefix = 'module.'  # saved from a DDP-wrapped model
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def load_teacher_strictly(teacher: nn.Module, filename: str) -> None:
    """Load ``filename`` into ``teacher``; any mismatch is an error.

    mmrazor's ``SingleTeacherDistill`` loads with ``strict=False``, so a
    checkpoint with other key names (a RepDistiller ``{'model': ...}`` file,
    say) loads nothing and training silently distills from a random teacher.

    Args:
        teacher (nn.Module): the built teacher model.
        filename (str): local path or URL of the checkpoint.

    Raises:
        RuntimeError: with the missing, unexpected and mis-shaped keys.
    """
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    state_dict = _state_dict_of(checkpoint)
    expected = teacher.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = sorted(
        f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
        f'{tuple(expected[k].shape)}' for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or mis_shaped:
        hint = ''
        if 'model' in checkpoint and 'state_dict' not in checkpoint:
            hint = ('\nThis looks like a RepDistiller/mdistiller release; '
                    'convert it first with tools/model_converters/'
                    'repdistiller_to_mmpretrain.py.')

        def head(keys):
            return ', '.join(keys[:8]) + (' ...' if len(keys) > 8 else '')

        raise RuntimeError(
            f'teacher checkpoint {filename} does not fit the teacher model '
            f'({len(missing)} missing, {len(unexpected)} unexpected, '
            f'{len(mis_shaped)} mis-shaped keys).\n'
            f'missing: {head(missing)}\nunexpected: {head(unexpected)}\n'
            f'mis-shaped: {head(mis_shaped)}{hint}')
    teacher.load_state_dict(state_dict, strict=True)


@MODELS.register_module()
class StrictSingleTeacherDistill(SingleTeacherDistill):
    """``SingleTeacherDistill`` that loads ``teacher_ckpt`` strictly.

    Every other argument and behaviour is mmrazor's. A silently random
    teacher is the worst failure a distillation run can have, so a teacher
    checkpoint whose keys or shapes do not match the teacher stops the run.

    Args:
        distiller (dict): config of the distiller.
        teacher (dict | BaseModel): config of the teacher, or the model.
        teacher_ckpt (str, optional): path or URL of the teacher weights.
        **kwargs: the other arguments of ``SingleTeacherDistill``.
    """

    def __init__(self,
                 distiller: dict,
                 teacher: Union[BaseModel, Dict],
                 teacher_ckpt: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(distiller, teacher, teacher_ckpt=None, **kwargs)
        self.teacher_ckpt = teacher_ckpt
        if teacher_ckpt:
            load_teacher_strictly(self.teacher, teacher_ckpt)
            # Keep Runner.init_weights() from re-initialising the teacher.
            self.teacher._is_init = True
