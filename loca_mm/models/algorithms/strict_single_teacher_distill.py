"""Single-teacher distillation that builds the networks its config names,
loads every weight strictly and publishes the LoCa losses' statistics."""
from typing import Dict, Optional, Tuple, Union

import torch
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from torch import nn

from loca_mm.utils.checkpoint import (STUDENT_PREFIX, TEACHER_PREFIX,
                                      check_fit, load_model_weights)
from loca_mm.utils.model_config import resolve_model_config
from mmrazor.models.algorithms import SingleTeacherDistill
from mmrazor.registry import MODELS
from .calibration_stats import (calibrated_losses, publish_calibration_stats,
                                take_calibration_totals)


def load_teacher_strictly(teacher: nn.Module,
                          filename: str,
                          prefix: Optional[str] = None) -> None:
    """Load ``filename`` into ``teacher``; any mismatch is an error.

    mmrazor's ``SingleTeacherDistill`` and mmengine's ``Pretrained``
    initialisation load with ``strict=False``, so a checkpoint with other
    key names (a RepDistiller ``{'model': ...}`` file, say) loads nothing and
    training silently distills from a random teacher.

    Args:
        teacher (nn.Module): the built teacher model.
        filename (str): local path or URL of the checkpoint.
        prefix (str, optional): load the weights under this key prefix
            (``Pretrained``'s ``prefix``).

    Raises:
        CheckpointMismatchError: with the missing, unexpected and
            mis-shaped keys.
        DamagedCheckpointError: if the file cannot be read.
    """
    load_model_weights(
        teacher,
        filename,
        f'teacher checkpoint {filename}',
        'the teacher model',
        prefix=prefix)


def _pop_pretrained_init(teacher: Dict) -> Optional[Tuple[str, str]]:
    """Take the ``init_cfg=dict(type='Pretrained', checkpoint=...)`` of the
    whole teacher out of its config.

    Returns:
        tuple, optional: the checkpoint and the ``prefix`` (or None), if the
        teacher has such an ``init_cfg``.
    """
    init_cfgs = teacher.get('init_cfg')
    listed = init_cfgs if isinstance(init_cfgs, list) else [init_cfgs]
    pretrained = [
        cfg for cfg in listed if isinstance(cfg, dict)
        and cfg.get('type') == 'Pretrained' and cfg.get('checkpoint')
    ]
    if not pretrained:
        return None
    if len(pretrained) > 1:
        raise ValueError('the teacher\'s init_cfg names more than one '
                         f'Pretrained checkpoint: {pretrained}')
    rest = [cfg for cfg in listed if cfg is not pretrained[0]]
    teacher['init_cfg'] = rest if isinstance(init_cfgs, list) else None
    return pretrained[0]['checkpoint'], pretrained[0].get('prefix')


@MODELS.register_module()
class StrictSingleTeacherDistill(SingleTeacherDistill):
    """``SingleTeacherDistill`` that builds the networks its config names,
    loads every weight strictly and publishes the LoCa losses' statistics.

    Every other argument and behaviour is mmrazor's.

    * **Networks given by reference.** A student or teacher written as
      ``dict(cfg_path='pkg::model.py', ...)`` is the referenced model config
      with the reference's other keys merged into it, as ``_base_``
      inheritance merges (``_delete_=True`` honoured): ``head=dict(
      num_classes=10)`` there builds a 10-class head, from a config file or
      from ``--cfg-options model.architecture.head.num_classes=10``
      (:func:`loca_mm.utils.resolve_model_config`).
    * **The teacher's weights.** A silently random teacher is the worst
      failure a distillation run can have. ``teacher_ckpt``, and an
      ``init_cfg=dict(type='Pretrained', checkpoint=...)`` of the whole
      teacher (loaded in ``init_weights``, as mmengine would), must fit the
      teacher key for key and shape for shape. A teacher config without
      either (``teacher_ckpt`` None or empty, e.g. an unset shell variable
      in ``--cfg-options``) is refused unless ``allow_random_teacher``.
    * **Loading the whole model** (``load_from``, ``resume``,
      ``Runner.load_checkpoint``): a checkpoint of the distillation model
      must fit it; a plain model's checkpoint (no ``architecture.`` and no
      ``teacher.`` keys, e.g. from
      ``tools/model_converters/convert_kd_ckpt_to_student.py``) is loaded
      into the student, which it must fit, and the log says so; the teacher
      keeps its weights.
    * **LoCa statistics.** Unless a ``LoCaLossHook`` publishes them (once
      per log entry, over the iterations since the previous one), the
      algorithm publishes ``train/loca_ratio`` and ``train/loca_scale`` of
      each training iteration to the MessageHub.

    Args:
        architecture (dict | BaseModel): config of the student, or the
            model.
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
                 architecture: Union[BaseModel, Dict],
                 distiller: dict,
                 teacher: Union[BaseModel, Dict],
                 teacher_ckpt: Optional[str] = None,
                 allow_random_teacher: bool = False,
                 **kwargs) -> None:
        if teacher_ckpt is not None and not isinstance(teacher_ckpt, str):
            raise TypeError('teacher_ckpt must be a path or URL (str) or '
                            f'None, got {teacher_ckpt!r}')
        teacher_ckpt = (teacher_ckpt or '').strip()
        if isinstance(architecture, dict):
            architecture = resolve_model_config(architecture)
        teacher_init = None
        if isinstance(teacher, dict):
            teacher = resolve_model_config(teacher)
            teacher_init = _pop_pretrained_init(teacher)
            self._check_teacher_weights(teacher_ckpt, teacher_init,
                                        allow_random_teacher)
        super().__init__(
            distiller,
            teacher,
            teacher_ckpt=None,
            architecture=architecture,
            **kwargs)
        self._teacher_init = teacher_init
        if teacher_ckpt:
            load_teacher_strictly(self.teacher, teacher_ckpt)
            # Keep Runner.init_weights() from re-initialising the teacher.
            self.teacher._is_init = True
        self._register_load_state_dict_pre_hook(self._fit_loaded_weights)
        self._losses_to_publish = [
            loss for loss in calibrated_losses(self.distiller)
            if loss.collects_stats
        ]
        for loss in self._losses_to_publish:
            # The algorithm collects their statistics (see parse_losses); a
            # LoCaLossHook attaches them again with the train loop's type.
            loss.attach_runner(None)

    @staticmethod
    def _check_teacher_weights(teacher_ckpt: str,
                               teacher_init: Optional[Tuple[str, str]],
                               allow_random_teacher: bool) -> None:
        """Refuse a teacher config with no weights, or with two sources."""
        if teacher_ckpt and teacher_init:
            raise ValueError(
                f'the teacher gets weights twice: teacher_ckpt={teacher_ckpt}'
                " and init_cfg=dict(type='Pretrained', checkpoint="
                f'{teacher_init[0]!r}). Keep one (set model.teacher_ckpt='
                'None to use the init_cfg).')
        if not (teacher_ckpt or teacher_init or allow_random_teacher):
            raise ValueError(
                'the teacher gets no weights: teacher_ckpt is unset or '
                'empty (an unset shell variable in --cfg-options '
                'model.teacher_ckpt=$CKPT gives this) and the teacher has '
                "no init_cfg=dict(type='Pretrained', checkpoint=...). Set "
                'model.teacher_ckpt to the teacher\'s checkpoint; to '
                'distill from a random teacher on purpose, set '
                'model.allow_random_teacher=True.')

    def init_weights(self) -> None:
        """Load the teacher's ``Pretrained`` checkpoint strictly, then
        initialise the rest as mmengine does."""
        if self._teacher_init is not None:
            checkpoint, prefix = self._teacher_init
            load_teacher_strictly(self.teacher, checkpoint, prefix)
            print_log(
                f'teacher weights loaded from {checkpoint} (init_cfg '
                'Pretrained; every key and shape fits)',
                logger='current')
            self.teacher._is_init = True
            self._teacher_init = None
        super().init_weights()

    def defer_calibration_stats(self) -> None:
        """Leave the LoCa statistics to ``LoCaLossHook``, which publishes
        them once per log entry; the hook calls it before training."""
        self._losses_to_publish = []

    def parse_losses(
        self, losses: Dict[str, torch.Tensor]
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """mmengine's ``parse_losses``; also publishes the LoCa losses'
        statistics of this training iteration, unless a ``LoCaLossHook``
        does (see :meth:`defer_calibration_stats`).

        Called in every training step, also under DDP, whose wrapper calls
        the module's ``parse_losses`` but not its ``train_step``.
        """
        if self._losses_to_publish:
            publish_calibration_stats(
                MessageHub.get_current_instance(),
                take_calibration_totals(self._losses_to_publish))
        return super().parse_losses(losses)

    def _fit_loaded_weights(self, state_dict: Dict[str, torch.Tensor],
                            prefix: str, *args) -> None:
        """``load_state_dict`` pre-hook: check the weights loaded into the
        whole model, and move a student's weights to the student.

        mmengine's ``load_from`` loads with ``strict=False``: a checkpoint
        of another layout (a converted student's ``backbone.*`` keys for
        this model's ``architecture.backbone.*``) loaded nothing and the
        run trained from random weights, with a warning at most.
        """
        loaded = {
            key[len(prefix):]: state_dict.pop(key)
            for key in list(state_dict) if key.startswith(prefix)
        }
        own = self.state_dict()
        source = 'the checkpoint loaded (load_from, resume, load_checkpoint)'
        if any(key.startswith((STUDENT_PREFIX, TEACHER_PREFIX))
               for key in loaded):
            check_fit(loaded, own, source,
                      f'the distillation model ({type(self).__name__})')
        else:
            check_fit(
                loaded, self.architecture.state_dict(),
                f'{source}, read as a plain student checkpoint (it has no '
                f'{STUDENT_PREFIX}* or {TEACHER_PREFIX}* keys),',
                'the student (model.architecture)')
            print_log(
                f'{source} holds a plain model (no {STUDENT_PREFIX}* or '
                f'{TEACHER_PREFIX}* keys): its {len(loaded)} weights are '
                'loaded into the student (model.architecture); the teacher '
                'and the distiller keep their weights.',
                logger='current')
            loaded = {STUDENT_PREFIX + key: value
                      for key, value in loaded.items()}
            loaded.update({
                key: value
                for key, value in own.items() if key not in loaded
            })
        state_dict.update({prefix + key: value
                           for key, value in loaded.items()})
