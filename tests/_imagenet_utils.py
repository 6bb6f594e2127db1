"""A tiny data set in ImageNet's layout, and the classifier the entry-point
tests train on it."""
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np


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
