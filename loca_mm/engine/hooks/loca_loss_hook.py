"""Connects the LoCa losses to the Runner: their statistics reach the log
without a host read per iteration, and their warm-up knows the loop."""
from typing import List, Optional

from mmengine.hooks import Hook, LoggerHook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from loca_mm.models.algorithms.calibration_stats import (
    calibrated_losses, publish_calibration_stats, take_calibration_totals)
from loca_mm.models.losses.base_calibrated_loss import BaseCalibratedLoss

__all__ = ['LoCaLossHook', 'publish_calibration_stats']


def train_loop_by_epoch(loop) -> Optional[bool]:
    """True for mmengine's epoch-based train loops, False for its
    iteration-based ones, None for any other loop (not guessed)."""
    if isinstance(loop, EpochBasedTrainLoop):
        return True
    if isinstance(loop, IterBasedTrainLoop):
        return False
    return None


def logs_after_iter(logger: LoggerHook, runner, batch_idx: int) -> bool:
    """Whether ``logger`` writes a training log entry after this iteration
    (the condition of mmengine 0.10's ``LoggerHook.after_train_iter``)."""
    if logger.every_n_inner_iters(batch_idx, logger.interval):
        return True
    return (logger.end_of_epoch(runner.train_dataloader, batch_idx)
            and (not logger.ignore_last
                 or len(runner.train_dataloader) <= logger.interval))


@HOOKS.register_module()
class LoCaLossHook(Hook):
    """Gives every LoCa loss of the model (``LoCaLoss``, ``DKDLoCaLoss``)
    what it needs from the Runner.

    * **Statistics.** The losses sum their calibration counts on the device;
      when the LoggerHook is about to write a training entry, this hook sums
      them over the losses (and over processes), and publishes
      ``train/loca_ratio`` (calibrated / valid samples) and
      ``train/loca_scale`` (mean ``s`` over the calibrated ones) of the
      iterations since the previous entry: one host read per log entry, none
      in the iterations between. They reach the text log, ``scalars.json``
      and every visualizer backend.
    * **The loop.** Before training it tells the losses whether the train
      loop counts epochs, so that ``DKDLoCaLoss(warmup_epochs=...)`` can
      refuse an iteration-based loop; before each iteration it gives them
      the epoch and iteration (their warm-up).

    loca_mm's distillation configs add it (``custom_hooks`` in
    ``configs/_base_/distill/logits_distiller.py``). Without it,
    ``StrictSingleTeacherDistill`` publishes the statistics of each
    iteration itself (read back every iteration); with it, the algorithm
    leaves them to the hook. It runs before the LoggerHook (priority NORMAL
    against BELOW_NORMAL).
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self._losses: List[BaseCalibratedLoss] = []
        self._logger: Optional[LoggerHook] = None

    def before_train(self, runner) -> None:
        by_epoch = train_loop_by_epoch(runner.train_loop)
        self._losses = calibrated_losses(runner.model)
        for loss in self._losses:
            loss.attach_runner(by_epoch)
        self._logger = next(
            (hook for hook in runner.hooks if isinstance(hook, LoggerHook)),
            None)
        # An algorithm that publishes the statistics itself when no hook
        # does (StrictSingleTeacherDistill) leaves them to this hook.
        for module in runner.model.modules():
            if hasattr(module, 'defer_calibration_stats'):
                module.defer_calibration_stats()

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        # The warm-ups read the progress from the loss, not from a look-up
        # inside forward (which a compiled forward cannot make).
        for loss in self._losses:
            loss.set_training_progress(runner.epoch, runner.iter)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if self._logger is None or not logs_after_iter(
                self._logger, runner, batch_idx):
            return
        stats = [loss for loss in self._losses if loss.collects_stats]
        if stats:
            publish_calibration_stats(runner.message_hub,
                                      take_calibration_totals(stats))
