"""A missing CIFAR-100 or ImageNet stops with the path it was looked for in
and how to get the data, also on a machine without internet."""
import copy
import urllib.error
from pathlib import Path

import pytest
from mmengine.config import Config

from _cifar100_utils import (cifar_files_unchecked,  # noqa: F401
                             random_split, write_cifar100)
from _imagenet_utils import write_imagenet_layout
from _support import REPO
from loca_mm.datasets import LocalCIFAR100, LocalImageNet
from mmpretrain.registry import DATASETS
DATASETS_DIR = REPO / 'configs' / '_base_' / 'datasets'
CIFAR_URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz'


def config_dataset(name: str, loader: str, data_root: Path) -> dict:
    """The dataset of ``loader`` in dataset base ``name``, at data_root."""
    dataset = copy.deepcopy(
        Config.fromfile(str(DATASETS_DIR / name))[loader].dataset)
    dataset.data_root = str(data_root)
    return dataset


def test_cifar100_missing_without_download_names_folder_and_url(tmp_path):
    dataset = config_dataset('cifar100_bs64.py', 'train_dataloader',
                             tmp_path / 'cifar100')
    assert dataset.type == 'LocalCIFAR100'
    dataset.download = False
    with pytest.raises(FileNotFoundError) as info:
        DATASETS.build(dataset)
    message = str(info.value)
    assert f'{tmp_path}/cifar100/cifar-100-python' in message
    assert CIFAR_URL in message and 'download=False' in message


def test_cifar100_offline_download_names_folder_and_url(tmp_path,
                                                        monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError('[Errno -3] Temporary failure in name '
                                    'resolution')

    monkeypatch.setattr('mmpretrain.datasets.cifar.'
                        'download_and_extract_archive', offline)
    with pytest.raises(FileNotFoundError) as info:
        LocalCIFAR100(data_root=str(tmp_path), split='test', pipeline=[])
    message = str(info.value)
    assert f'{tmp_path}/cifar-100-python' in message
    assert 'name resolution' in message and 'without internet' in message
    assert f'download {CIFAR_URL} and extract it into {tmp_path}' in message


@pytest.mark.usefixtures('cifar_files_unchecked')
def test_cifar100_present_loads(tmp_path):
    write_cifar100(str(tmp_path), random_split(3, 0), random_split(2, 1))
    dataset = LocalCIFAR100(data_root=str(tmp_path), split='train',
                            pipeline=[], download=False)
    assert len(dataset) == 3


@pytest.mark.parametrize('loader, split', [('train_dataloader', 'train'),
                                           ('val_dataloader', 'val')])
def test_imagenet_missing_names_path_and_source(loader, split, tmp_path):
    dataset = config_dataset('imagenet_bs32.py', loader, tmp_path / 'inet')
    assert dataset.type == 'LocalImageNet'
    with pytest.raises(FileNotFoundError) as info:
        DATASETS.build(dataset)
    message = str(info.value)
    assert f'{tmp_path}/inet/{split} not found' in message
    assert 'does not download ImageNet' in message
    assert 'https://image-net.org' in message


def test_imagenet_present_loads(tmp_path):
    write_imagenet_layout(str(tmp_path), 2, train_per_class=2,
                          val_per_class=1, size=(8, 8))
    dataset = LocalImageNet(data_root=str(tmp_path), split='train',
                            pipeline=[])
    assert len(dataset) == 4
