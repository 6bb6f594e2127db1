"""Test instrumentation that the training processes started by
``tools/dist_train.sh`` import through ``custom_imports``: a record of the
files each rank writes, a hook that interrupts a run, and the set-up of the
suite's other processes (config formatting remembered, the imported stack
out of garbage collection). Kept small: every training process imports it."""
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from projects.fashion_mnist.worker import (
    exclude_imports_from_garbage_collection, remember_config_formatting)

# Where each process appends the files it writes through mmengine's file
# backend (checkpoints included), one file per rank: set by the test, read
# back after the run.
WRITE_LOG_DIR = 'LOCA_TEST_WRITE_LOG_DIR'


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and \
        dist.is_initialized() else 0


def _record_writes() -> None:
    """Log each file this process writes with mmengine's LocalBackend.put
    (how Runner.save_checkpoint writes) to ``<dir>/writes_rank<r>.txt``.

    Active only in processes started with ``LOCA_TEST_WRITE_LOG_DIR`` set.
    """
    log_dir = os.environ.get(WRITE_LOG_DIR)
    if not log_dir or getattr(LocalBackend.put, '_recorded', False):
        return
    put = LocalBackend.put

    def recorded_put(self, obj, filepath):
        with open(osp.join(log_dir, f'writes_rank{_rank()}.txt'), 'a') as log:
            log.write(f'{osp.basename(filepath)}\n')
        return put(self, obj, filepath)

    recorded_put._recorded = True
    LocalBackend.put = recorded_put


_record_writes()
remember_config_formatting()
exclude_imports_from_garbage_collection()


@HOOKS.register_module()
class InterruptAtEpochHook(Hook):
    """Stop training with an error before epoch ``epoch`` (0-based) starts,
    on every rank: a run killed after its checkpoint was written."""

    def __init__(self, epoch: Optional[int] = None) -> None:
        self.epoch = epoch

    def before_train_epoch(self, runner) -> None:
        if self.epoch is not None and runner.epoch == self.epoch:
            raise RuntimeError(f'simulated interruption at epoch {self.epoch}')
