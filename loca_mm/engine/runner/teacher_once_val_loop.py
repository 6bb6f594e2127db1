"""Validation loop for distillation that evaluates the teacher only once."""
from typing import Dict, List, Union

import torch
from mmengine.evaluator import Evaluator
from mmengine.model import is_model_wrapper
from mmengine.registry import LOOPS
from mmengine.runner import ValLoop, autocast
# mmengine's own ValLoop reports validation losses through this helper.
from mmengine.runner.loops import _parse_losses
from torch.utils.data import DataLoader


@LOOPS.register_module()
class TeacherOnceValLoop(ValLoop):
    """Validate the student every time and the frozen teacher once.

    mmrazor's ``SingleTeacherDistillValLoop`` evaluates the teacher at every
    validation, although a frozen teacher's accuracy cannot change: that
    doubles the validation cost for nothing. This loop evaluates the student
    like mmengine's ``ValLoop`` and adds the teacher's metrics, prefixed with
    ``teacher_prefix`` (``teacher/accuracy/top1``), to the first validation
    of the run only. mmengine's logger keeps printing the last value of every
    ``val/`` scalar, so the teacher's top-1 stays visible in later logs.

    The teacher sees the images through the distillation model's data
    preprocessor, as it does during training.

    Args:
        runner (Runner): the runner; its model must have a ``teacher``.
        dataloader (DataLoader | dict): the validation dataloader.
        evaluator (Evaluator | dict | list): the metrics.
        fp16 (bool): validate under autocast. Defaults to False.
        teacher_prefix (str): prefix of the teacher's metric names.
            Defaults to ``'teacher/'``.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 fp16: bool = False,
                 teacher_prefix: str = 'teacher/') -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        model = self.runner.model
        if is_model_wrapper(model):
            model = model.module
        if not isinstance(getattr(model, 'teacher', None), torch.nn.Module):
            raise TypeError(
                'TeacherOnceValLoop validates a distillation model with a '
                f'`teacher` module; {type(model).__name__} has none. Use '
                "val_cfg=dict(type='ValLoop') for a model without teacher.")
        self.distill_model = model
        self.teacher_prefix = teacher_prefix
        self.teacher_evaluated = False

    def run(self) -> dict:
        """Validate the student (and, the first time, the teacher).

        Returns:
            dict: the metrics, with the teacher's after the first call.
        """
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()

        self.val_loss.clear()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        # The student's metrics come first: CheckpointHook(save_best='auto')
        # picks the first metric.
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        if self.val_loss:
            metrics.update(_parse_losses(self.val_loss, 'val'))
        if not self.teacher_evaluated:
            metrics.update(self._evaluate_teacher())
            self.teacher_evaluated = True

        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

    @torch.no_grad()
    def _evaluate_teacher(self) -> Dict[str, float]:
        """The teacher's metrics on the validation set, with the prefix."""
        preprocess = self.distill_model.data_preprocessor
        teacher = self.distill_model.teacher
        for data_batch in self.dataloader:
            with autocast(enabled=self.fp16):
                data = preprocess(data_batch, False)
                outputs = teacher(**data, mode='predict')
            self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        return {self.teacher_prefix + k: v for k, v in metrics.items()}
