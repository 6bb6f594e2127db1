"""CIFAR-100 and ImageNet that say where their files must be when they are
missing, instead of failing deep inside a download or a folder scan."""
import os.path as osp

from mmpretrain.datasets import CIFAR100, ImageNet
from mmpretrain.registry import DATASETS

IMAGENET_URL = 'https://image-net.org/download.php'


@DATASETS.register_module()
class LocalCIFAR100(CIFAR100):
    """mmpretrain's ``CIFAR100`` with a clear error when the data is missing.

    mmpretrain reads ``data_root/cifar-100-python/{train,test,meta}`` and,
    with ``download=True``, downloads and extracts the archive there when
    the files are missing or their md5 sums differ. Here a missing data set
    that cannot be downloaded (``download=False``, or no internet) stops
    with the folder and the download instruction.
    """

    def load_data_list(self):
        if self._check_integrity():
            return super().load_data_list()
        root = self.data_prefix['root']
        folder = osp.join(root, self.base_folder)
        how = (f'download {self.url} and extract it into {root} (it unpacks '
               f'to {self.base_folder}/)')
        if not self.download:
            raise FileNotFoundError(
                f'CIFAR-100 is not in {folder} (or its md5 sums differ) and '
                f'download=False: {how}')
        try:
            return super().load_data_list()
        except OSError as error:  # urllib's errors included
            raise FileNotFoundError(
                f'CIFAR-100 is not in {folder} and downloading it failed '
                f'({error}); on a machine without internet, {how} by '
                'hand') from error


@DATASETS.register_module()
class LocalImageNet(ImageNet):
    """mmpretrain's ``ImageNet`` with a clear error when the data is missing.

    mmpretrain does not download ImageNet. It reads the images of a split
    from ``data_root/<split>`` (class folders, or any layout listed in
    ``data_root/meta/<split>.txt``); a missing folder or list stops here
    with the path and where to get the data.
    """

    def load_data_list(self):
        folder = self.data_prefix['img_path']
        # Remote storage (s3://, ...) is left to mmpretrain.
        missing = [
            path for path in (folder, self.ann_file)
            if path and '://' not in path and not osp.exists(path)
        ]
        if missing:
            raise FileNotFoundError(
                f'ImageNet: {" and ".join(missing)} not found. mmpretrain '
                'does not download ImageNet-1k: get ILSVRC2012 from '
                f'{IMAGENET_URL} and put data/imagenet/train/<class>/*.JPEG '
                'and data/imagenet/val/<class>/*.JPEG (or flat folders with '
                'meta/train.txt and meta/val.txt), or point data_root at '
                'your copy')
        return super().load_data_list()
