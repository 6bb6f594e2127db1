"""Helpers for the entry-point and ImageNet config tests: a tiny data set in
ImageNet's layout, and test-only instrumentation that the training processes
started by ``tools/dist_train.sh`` import through ``custom_imports``."""
import importlib.util
import os
import os.path as osp
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools'

# Where each process appends the files it writes through mmengine's file
# backend (checkpoints included), one file per rank: set by the test, read
# back after the run.
WRITE_LOG_DIR = 'LOCA_TEST_WRITE_LOG_DIR'


def write_imagenet_layout(root: str,
                          num_classes: int,
                          train_per_class: int,
                          val_per_class: int,
                          size: Sequence[int] = (32, 32),
                          grey: bool = False,
                          seed: int = 0) -> None:
    """Write a small data set in ImageNet's layout.

    ``train/<wnid>/<wnid>_<i>.JPEG`` with ``meta/train.txt`` and
    ``val/ILSVRC2012_val_<i>.JPEG`` with ``meta/val.txt`` (``path label``
    lines), as mmpretrain's ``ImageNet(split=...)`` reads them. Each class
    has its own mean brightness, so a model can learn something from it.

    Args:
        root (str): the data set's ``data_root``.
        num_classes (int): classes, labelled 0..num_classes-1.
        train_per_class (int): training images per class.
        val_per_class (int): validation images per class.
        size (Sequence[int]): image height and width.
        grey (bool): single-channel images.
        seed (int): seed of the pixel noise.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(size) if grey else tuple(size) + (3, )
    root = Path(root)
    (root / 'meta').mkdir(parents=True, exist_ok=True)

    def image(label: int) -> np.ndarray:
        level = 40 + 170 * label / max(num_classes - 1, 1)
        noise = rng.normal(0, 30, shape)
        return np.clip(level + noise, 0, 255).astype(np.uint8)

    train_lines = []
    for label in range(num_classes):
        wnid = f'n{label:08d}'
        (root / 'train' / wnid).mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class):
            name = f'{wnid}/{wnid}_{i}.JPEG'
            cv2.imwrite(str(root / 'train' / name), image(label))
            train_lines.append(f'{name} {label}')
    val_lines = []
    (root / 'val').mkdir(exist_ok=True)
    for i in range(num_classes * val_per_class):
        label = i % num_classes
        name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        cv2.imwrite(str(root / 'val' / name), image(label))
        val_lines.append(f'{name} {label}')
    (root / 'meta' / 'train.txt').write_text('\n'.join(train_lines) + '\n')
    (root / 'meta' / 'val.txt').write_text('\n'.join(val_lines) + '\n')


def lenet() -> dict:
    """mmpretrain's LeNet5 classifier for 4 classes: tiny, and without
    BatchNorm, whose per-process statistics would make two processes
    compute something else than one on the same global batch."""
    return dict(
        _scope_='mmpretrain',
        type='ImageClassifier',
        backbone=dict(type='LeNet5'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=4,
            in_channels=120,
            loss=dict(type='CrossEntropyLoss')))


def load_tool(relative_path: str) -> ModuleType:
    """Import a script of tools/ (e.g. ``'train.py'``) as a module."""
    path = TOOLS / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quiet_runner_reports(monkeypatch) -> None:
    """Skip what a Runner only writes to its log: the environment report
    and the yapf-formatted config (seconds per Runner on 2 cores)."""
    monkeypatch.setattr('mmengine.runner.runner.collect_env', dict)
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))


def local_dataloaders(data_root: str, batch_size: int) -> dict:
    """Config overrides pointing every dataloader at ``data_root``, in the
    main process (no workers)."""
    overrides = {}
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        overrides.update({
            f'{name}.dataset.data_root': data_root,
            f'{name}.batch_size': batch_size,
            f'{name}.num_workers': 0,
            f'{name}.persistent_workers': False,
            f'{name}.pin_memory': False,
        })
    return overrides


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


@HOOKS.register_module()
class InterruptAtEpochHook(Hook):
    """Stop training with an error before epoch ``epoch`` (0-based) starts,
    on every rank: a run killed after its checkpoint was written."""

    def __init__(self, epoch: Optional[int] = None) -> None:
        self.epoch = epoch

    def before_train_epoch(self, runner) -> None:
        if self.epoch is not None and runner.epoch == self.epoch:
            raise RuntimeError(f'simulated interruption at epoch {self.epoch}')
