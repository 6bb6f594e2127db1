"""Single-teacher distillation that refuses a teacher without weights and a
teacher checkpoint that does not fit the teacher model."""
from typing import Dict, Optional, Union

from mmengine.model import BaseModel
from torch import nn

from loca_mm.utils.checkpoint import load_model_weights
from mmrazor.models.algorithms import SingleTeacherDistill
from mmrazor.registry import MODELS


def load_teacher_strictly(teacher: nn.Module, filename: str) -> None:
    """Load ``filename`` into ``teacher``; any mismatch is an error.

    mmrazor's ``SingleTeacherDistill`` loads with ``strict=False``, so a
    checkpoint with other key names (a RepDistiller ``{'model': ...}`` file,
    say) loads nothing and training silently distills from a random teacher.

    Args:
        teacher (nn.Module): the built teacher model.
        filename (str): local path or URL of the checkpoint.

    Raises:
        CheckpointMismatchError: with the missing, unexpected and
            mis-shaped keys.
        DamagedCheckpointError: if the file cannot be read.
    """
    load_model_weights(teacher, filename, f'teacher checkpoint {filename}',
                       'the teacher model')


def _has_pretrained_init(teacher: Dict) -> bool:
    """Whether a teacher config loads its weights itself: an ``init_cfg``
    of type ``Pretrained`` with a checkpoint, for the whole teacher."""
    init_cfgs = teacher.get('init_cfg') or []
    if isinstance(init_cfgs, dict):
        init_cfgs = [init_cfgs]
    return any(
        cfg.get('type') == 'Pretrained' and cfg.get('checkpoint')
        and not cfg.get('prefix') for cfg in init_cfgs)


@MODELS.register_module()
class StrictSingleTeacherDistill(SingleTeacherDistill):
    """``SingleTeacherDistill`` that loads ``teacher_ckpt`` strictly and
    refuses a teacher that would get no weights.

    Every other argument and behaviour is mmrazor's. A silently random
    teacher is the worst failure a distillation run can have, so a teacher
    checkpoint whose keys or shapes do not match the teacher stops the run,
    and so does a teacher config without weights: ``teacher_ckpt`` None or
    empty (an unset shell variable in ``--cfg-options``) and no
    ``init_cfg=dict(type='Pretrained', checkpoint=...)`` on the teacher.

    Args:
        distiller (dict): config of the distiller.
        teacher (dict | BaseModel): config of the teacher, or the model (a
            built model is used with the weights it has).
        teacher_ckpt (str, optional): path or URL of the teacher weights.
        allow_random_teacher (bool): accept a teacher config without
            weights (timing runs, or weights loaded into the whole
            algorithm afterwards, as ``tools/test.py`` does). Defaults to
            False.
        **kwargs: the other arguments of ``SingleTeacherDistill``.
    """

    def __init__(self,
                 distiller: dict,
                 teacher: Union[BaseModel, Dict],
                 teacher_ckpt: Optional[str] = None,
                 allow_random_teacher: bool = False,
                 **kwargs) -> None:
        if teacher_ckpt is not None and not isinstance(teacher_ckpt, str):
            raise TypeError('teacher_ckpt must be a path or URL (str) or '
                            f'None, got {teacher_ckpt!r}')
        teacher_ckpt = (teacher_ckpt or '').strip()
        if (not teacher_ckpt and isinstance(teacher, dict)
                and not allow_random_teacher
                and not _has_pretrained_init(teacher)):
            raise ValueError(
                'the teacher gets no weights: teacher_ckpt is unset or '
                'empty (an unset shell variable in --cfg-options '
                'model.teacher_ckpt=$CKPT gives this) and the teacher has '
                "no init_cfg=dict(type='Pretrained', checkpoint=...). Set "
                'model.teacher_ckpt to the teacher\'s checkpoint; to '
                'distill from a random teacher on purpose, set '
                'model.allow_random_teacher=True.')
        super().__init__(distiller, teacher, teacher_ckpt=None, **kwargs)
        if teacher_ckpt:
            load_teacher_strictly(self.teacher, teacher_ckpt)
            # Keep Runner.init_weights() from re-initialising the teacher.
            self.teacher._is_init = True
