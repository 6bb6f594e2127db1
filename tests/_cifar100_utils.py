"""Helpers for the CIFAR-100 config tests: a dataset in CIFAR-100's own
format written on the fly, and short training runs of the configs."""
import os.path as osp
import pickle
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import loca_mm  # noqa: F401  (registers the modules the configs name)
from loca_mm.utils import resolve_model_config
from mmpretrain.datasets import CIFAR100
from mmpretrain.registry import MODELS as CLS_MODELS

from _support import REPO, dataloader_options

DISTILL_DIR = REPO / 'configs' / 'distill' / 'cifar100'
VANILLA_DIR = REPO / 'configs' / 'vanilla' / 'cifar100'
MODEL_DIR = REPO / 'configs' / '_base_' / 'models' / 'cifar100'


def write_cifar100(root: str, train: Sequence[np.ndarray],
                   test: Sequence[np.ndarray]) -> None:
    """Write CIFAR-100's python pickles (``cifar-100-python/{train,test}``).

    Args:
        root (str): the dataset's ``data_root``.
        train, test: pairs ``(images, labels)``; images uint8 (N, 32, 32, 3)
            in RGB, labels (N,) in [0, 100).
    """
    folder = Path(root) / CIFAR100.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in (('train', train), ('test', test)):
        images = np.asarray(images, dtype=np.uint8)
        assert images.shape[1:] == (32, 32, 3), images.shape
        # The pickles hold rows of 3072 bytes: the R, G and B planes.
        rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        with open(folder / split, 'wb') as f:
            pickle.dump(
                {
                    'data': rows,
                    'fine_labels': [int(x) for x in labels]
                }, f)


def files_exist(dataset: CIFAR100) -> bool:
    """Integrity check without md5 sums, for data the tests write."""
    root = dataset.data_prefix['root']
    return all(
        osp.exists(osp.join(root, dataset.base_folder, name))
        for name, _ in dataset.train_list + dataset.test_list)


@pytest.fixture(scope='session')
def cifar_files_unchecked():
    """mmpretrain's CIFAR100 compares md5 sums with the real files and
    downloads on a mismatch: accept any files that exist, for the session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CIFAR100, '_check_integrity', files_exist)
        yield


def random_split(num: int, seed: int) -> tuple:
    """``num`` random 32x32 RGB images and labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, 100, num)


def save_fresh_model(model_cfg: dict, path: str) -> Dict[str, torch.Tensor]:
    """Build ``model_cfg`` (an mmpretrain classifier, or a config's
    ``cfg_path`` reference to one), save its weights as an mmengine
    checkpoint at ``path`` and return them."""
    state_dict = CLS_MODELS.build(resolve_model_config(model_cfg)).state_dict()
    torch.save({'state_dict': state_dict}, path)
    return state_dict


def short_run_options(data_root: str,
                      work_dir: str,
                      batch_size: int = 4,
                      teacher_ckpt: Optional[str] = None) -> dict:
    """``--cfg-options`` for a one-epoch run on a small local dataset:
    no download, no worker processes, no checkpoints or visualizer files,
    quiet logs."""
    options = {
        'work_dir': work_dir,
        'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 1,
        'default_hooks.checkpoint': None,
        'visualizer.vis_backends': [],
        'log_level': 'WARNING',
    }
    options.update(
        dataloader_options(
            data_root,
            batch_size=batch_size,
            in_process=True,
            download=False,
            # Serialising a dataset of a few images is a costly gc.collect().
            serialize_data=False))
    if teacher_ckpt is not None:
        options['model.teacher_ckpt'] = teacher_ckpt
    return options


def build_runner(config: Union[Path, Config], options: dict) -> Runner:
    """The runner of ``config`` (a file or a parsed config, which is
    changed) with ``options`` merged in."""
    cfg = config if isinstance(config, Config) else Config.fromfile(
        str(config))
    cfg.merge_from_dict(options)
    return Runner.from_cfg(cfg)
