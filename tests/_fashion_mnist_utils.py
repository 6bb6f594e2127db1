"""Helpers for the Fashion-MNIST tests: a small data set in the IDX format
and a teacher whose every prediction the test knows."""
import gzip
import importlib
import io
import json
import struct
from contextlib import redirect_stdout
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config

from _support import REPO, command_line_options, dataloader_options

DISTILL = REPO / 'configs/distill/fashion_mnist'
PAIR = 'logits_convnet32x64_convnet16x32_1xb128_fashion_mnist.py'


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file, gzipped if ``path`` ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
        f'>{array.ndim}I', *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if path.suffix == '.gz' else open
    with opener(path, 'wb') as f:
        f.write(data)


def class_images(labels: Sequence[int], seed: int = 0) -> np.ndarray:
    """28x28 images whose mean brightness grows with the label, plus noise,
    so that a network can learn the classes in a few iterations."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    levels = 20.0 + 23.0 * labels[:, None, None]
    noise = rng.normal(0.0, 12.0, (len(labels), 28, 28))
    return np.clip(levels + noise, 0, 255).astype(np.uint8)


def write_fashion_mnist(root: Path, train_labels: Sequence[int],
                        test_labels: Sequence[int]) -> Path:
    """Write the four Fashion-MNIST files: the training split gzipped (as
    Debian ships it), the test split plain (as extracted by mmpretrain).

    Returns:
        Path: ``root``, to use as the datasets' ``data_root``.
    """
    root.mkdir(parents=True, exist_ok=True)
    for split, labels, suffix in (('train', train_labels, '.gz'),
                                  ('t10k', test_labels, '')):
        labels = np.asarray(labels, dtype=np.uint8)
        write_idx(root / f'{split}-images-idx3-ubyte{suffix}',
                  class_images(labels, seed=len(split)))
        write_idx(root / f'{split}-labels-idx1-ubyte{suffix}', labels)
    return root


def data_options(root: Path) -> List[str]:
    """``--cfg-options`` pointing every dataloader of a config at ``root``."""
    return command_line_options(dataloader_options(root))


def run_study_tool(tool: str, tmp_path: Path, *args,
                   jobs: int = 2) -> Tuple[str, dict]:
    """Run the study's script or the demo of projects/fashion_mnist
    (``tool``: ``'run_study'`` or ``'demo'``) at toy size: 64 training
    images (labels 0..9 in turn), 10 test images, one epoch of batch 32 for
    every run, output in ``tmp_path/out``, runs in ``tmp_path/work``,
    ``jobs`` trainings at once.

    The script's ``main`` runs in this process (its trainings run in the
    worker processes it starts): another interpreter would import the
    stack once more.

    Returns:
        tuple: what the script printed and its ``results.json``.
    """
    root = write_fashion_mnist(tmp_path / 'data',
                               [i % 10 for i in range(64)], list(range(10)))
    toy = [
        *data_options(root), 'train_dataloader.batch_size=32',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'param_scheduler.T_max=1', 'default_hooks.logger.interval=1'
    ]
    printed = io.StringIO()
    with redirect_stdout(printed):
        importlib.import_module(f'projects.fashion_mnist.{tool}').main([
            '--out-dir',
            str(tmp_path / 'out'), '--work-root',
            str(tmp_path / 'work'), '--jobs',
            str(jobs), *args, '--cfg-options', *toy
        ])
    with open(tmp_path / 'out' / 'results.json') as f:
        return printed.getvalue(), json.load(f)


def constant_teacher_logits(num_classes: int, predicted: int,
                            logit: float) -> torch.Tensor:
    logits = torch.zeros(num_classes)
    logits[predicted] = logit
    return logits


def save_constant_teacher(path: Path, predicted: int, logit: float) -> None:
    """Save weights for the Fashion-MNIST teacher network (convnet32x64)
    under which it outputs the same logits for every image: ``logit`` for
    class ``predicted``, 0 for the others.

    The convolutions are zero, so in eval mode every feature is
    ``ReLU(BN(0)) = 0`` and the linear head returns its bias.
    """
    config = Config.fromfile(
        str(REPO / 'configs/_base_/models/fashion_mnist/convnet32x64.py'))
    import loca_mm  # noqa: F401  (registers SmallConvNet)
    from mmpretrain.registry import MODELS
    teacher = MODELS.build(config.model)
    state_dict = teacher.state_dict()
    for key, value in state_dict.items():
        if key.endswith('weight') and value.dim() == 4:
            value.zero_()
    state_dict['head.fc.weight'].zero_()
    state_dict['head.fc.bias'].copy_(
        constant_teacher_logits(
            len(state_dict['head.fc.bias']), predicted, logit))
    torch.save({'state_dict': state_dict}, path)


def train_two_iterations(config: Path, tmp_path: Path):
    """Train a Fashion-MNIST distillation config for two iterations with a
    real Runner and return it.

    64 images of labels 0..9 in turn, in order, batch 32; the teacher
    predicts class 3 for every image: right on 3 images of the first batch
    and 4 of the second, so LoCa calibrates 29 / 32 and 28 / 32. Logs every
    iteration into ``tmp_path / 'work'``.
    """
    from mmengine.runner import Runner

    root = write_fashion_mnist(tmp_path / 'data',
                               [i % 10 for i in range(64)], [0, 1])
    teacher = tmp_path / 'teacher.pth'
    save_constant_teacher(teacher, predicted=3, logit=2.0)
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict({
        'model.teacher_ckpt': str(teacher),
        'train_dataloader.dataset.data_root': str(root),
        'train_dataloader.dataset.indices': None,
        'train_dataloader.batch_size': 32,
        'train_dataloader.sampler.shuffle': False,
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint': None,
        'work_dir': str(tmp_path / 'work'),
    })
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner
