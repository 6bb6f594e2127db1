"""Connects the LoCa losses to the Runner: their statistics reach the log
without a host read per iteration, and their warm-up knows the loop."""
from typing import List, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook, LoggerHook
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from loca_mm.functional import calibration_summary
from loca_mm.models.losses.base_calibrated_loss import BaseCalibratedLoss

STAT_KEYS = ('train/loca_ratio', 'train/loca_scale')


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


def publish_calibration_stats(hub: MessageHub, totals: torch.Tensor) -> None:
    """Write ``train/loca_ratio`` and ``train/loca_scale`` of ``totals``
    (summed calibration counts) to ``hub``, reading them back once.

    Each scalar holds only its latest value, so whatever smoothing the
    LogProcessor applies, it logs the statistics of exactly the window
    that ``totals`` covers. A window without a calibrated sample has no
    mean ``s``: ``train/loca_scale`` is then removed rather than repeated.
    """
    summary = calibration_summary(totals)
    for key in STAT_KEYS:
        name = key.split('/', 1)[1]
        if name not in summary:
            hub.log_scalars.pop(key, None)
            continue
        if key not in hub.log_scalars:
            hub.log_scalars[key] = HistoryBuffer(max_length=1)
        hub.update_scalar(key, summary[name])


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
    ``configs/_base_/distill/logits_distiller.py``); a config of your own
    adds ``custom_hooks = [dict(type='LoCaLossHook')]``. It runs before the
    LoggerHook (priority NORMAL against BELOW_NORMAL).
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self._losses: List[BaseCalibratedLoss] = []
        self._logger: Optional[LoggerHook] = None

    def before_train(self, runner) -> None:
        by_epoch = train_loop_by_epoch(runner.train_loop)
        self._losses = [
            module for module in runner.model.modules()
            if isinstance(module, BaseCalibratedLoss)
        ]
        for loss in self._losses:
            loss.attach_runner(by_epoch)
        self._logger = next(
            (hook for hook in runner.hooks if isinstance(hook, LoggerHook)),
            None)

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
        if not stats:
            return
        device = stats[0].calibration_totals.device
        totals = sum(
            loss.take_calibration_totals().to(device) for loss in stats)
        all_reduce(totals, op='sum')
        publish_calibration_stats(runner.message_hub, totals)
