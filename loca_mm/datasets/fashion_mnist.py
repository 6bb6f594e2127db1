"""Fashion-MNIST from local IDX files, compressed or not."""
import gzip
import os.path as osp
import struct
from typing import List, Optional, Sequence

import numpy as np
from mmengine.logging import MMLogger

from mmpretrain.datasets import FashionMNIST
from mmpretrain.registry import DATASETS

# Where Debian's ``dataset-fashion-mnist`` package installs the files.
DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'


def read_idx_ubyte(path: str) -> np.ndarray:
    """Read an IDX file of unsigned bytes (the MNIST format), maybe gzipped.

    Args:
        path (str): file path; a ``.gz`` suffix means gzip-compressed.

    Returns:
        np.ndarray: uint8 array of the shape stored in the header.
    """
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    # Header: two zero bytes, a type code (0x08 = uint8), the number of
    # dimensions, then one big-endian uint32 per dimension.
    if len(data) < 4 or data[:2] != b'\x00\x00' or data[2] != 0x08:
        raise ValueError(f'{path} is not an IDX file of unsigned bytes')
    ndim = data[3]
    offset = 4 + 4 * ndim
    shape = struct.unpack(f'>{ndim}I', data[4:offset])
    array = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if array.size != int(np.prod(shape)):
        raise ValueError(f'{path}: header says {shape} ({np.prod(shape)} '
                         f'values) but holds {array.size}; truncated file?')
    return array.reshape(shape)


@DATASETS.register_module()
class LocalFashionMNIST(FashionMNIST):
    """Fashion-MNIST read from local IDX files, downloaded only if absent.

    mmpretrain's ``FashionMNIST`` only accepts the four IDX files unpacked
    (``train-images-idx3-ubyte`` ...) and picks the split from ``test_mode``
    alone. This class reads each file as it is found, plain or ``.gz`` (the
    form in which Debian's ``dataset-fashion-mnist`` package and the
    original release ship them), honours ``split``, and checks what it read.

    Files are looked up in ``data_root`` first, then in each of
    ``fallback_roots`` (by default the Debian package's directory); if no
    directory holds all four and ``download`` is set, mmpretrain's download
    fills ``data_root``.

    Args:
        data_root (str): directory of the IDX files; the download target.
        split (str): ``'train'`` (60,000 images in the release) or
            ``'test'`` (10,000). Defaults to ``'train'``.
        fallback_roots (Sequence[str]): further directories to search.
            Defaults to the Debian package's directory.
        download (bool): download into ``data_root`` when no directory holds
            the files. Defaults to True.
        **kwargs: other arguments of mmengine's ``BaseDataset``, e.g.
            ``pipeline``, ``indices`` (an int n keeps the first n images,
            -n the last n), ``test_mode``.
    """

    SPLITS = ('train', 'test')
    IMAGE_SHAPE = (28, 28)

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 fallback_roots: Sequence[str] = (DEBIAN_FASHION_MNIST, ),
                 download: bool = True,
                 **kwargs) -> None:
        if split not in self.SPLITS:
            raise ValueError(
                f'split must be one of {self.SPLITS}, got {split!r}')
        self.fallback_roots = tuple(fallback_roots)
        super().__init__(
            data_root=data_root, split=split, download=download, **kwargs)

    def _file_names(self) -> List[str]:
        files = self.train_list if self.split == 'train' else self.test_list
        return [name[:-len('.gz')] for name, _ in files]

    @staticmethod
    def _find(root: str, name: str) -> Optional[str]:
        for candidate in (name, name + '.gz'):
            path = osp.join(root, candidate)
            if osp.isfile(path):
                return path
        return None

    def _locate(self) -> Optional[List[str]]:
        """Paths of the split's image and label files, or None."""
        for root in (self.data_prefix['root'], *self.fallback_roots):
            paths = [self._find(root, name) for name in self._file_names()]
            if all(paths):
                return paths
        return None

    def _check_exists(self) -> bool:
        return self._locate() is not None

    def load_data_list(self) -> List[dict]:
        """Read images and labels, downloading them first if needed."""
        paths = self._locate()
        if paths is None:
            searched = ', '.join((self.data_prefix['root'], ) +
                                 self.fallback_roots)
            if not self.download:
                raise FileNotFoundError(
                    f'Fashion-MNIST {self.split} files not found in '
                    f'{searched}; install the Debian package '
                    '`dataset-fashion-mnist` or set download=True')
            self._download()
            paths = self._locate()
            if paths is None:
                raise FileNotFoundError(
                    'Fashion-MNIST download did not produce the '
                    f'{self.split} files in {self.data_prefix["root"]}')
        MMLogger.get_current_instance().info(
            f'Fashion-MNIST {self.split}: reading {", ".join(paths)}')
        images = read_idx_ubyte(paths[0])
        labels = read_idx_ubyte(paths[1]).astype(np.int64)
        if (images.ndim != 3 or images.shape[1:] != self.IMAGE_SHAPE
                or labels.shape != images.shape[:1]):
            raise ValueError(
                f'{paths[0]} / {paths[1]}: expected N images of '
                f'{self.IMAGE_SHAPE} and N labels, got {images.shape} and '
                f'{labels.shape}')
        if labels.min() < 0 or labels.max() >= len(self.METAINFO['classes']):
            raise ValueError(f'{paths[1]}: labels outside [0, 10)')
        # 0-d arrays, as mmpretrain's label formatting expects.
        return [{
            'img': image,
            'gt_label': np.array(label)
        } for image, label in zip(images, labels)]
