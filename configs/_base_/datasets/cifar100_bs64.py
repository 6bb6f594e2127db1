# CIFAR-100 (50,000 training / 10,000 test images, 32x32, 100 classes) as in
# the CRD/RepDistiller recipe: batch 64 on one GPU, random crop with padding 4
# and horizontal flip. The python pickles are read from
# data_root/cifar-100-python, downloaded there when missing (mmpretrain's
# CIFAR100); loca_mm's LocalCIFAR100 stops with the folder and the archive's
# URL when that is impossible (offline, or download=False).
dataset_type = 'LocalCIFAR100'
data_root = 'data/cifar100'

# The recipe's normalisation, (0.5071, 0.4867, 0.4408) and
# (0.2675, 0.2565, 0.2761) on the [0, 1] scale. The explicit type lets the
# distillation algorithm (mmrazor scope) build it too.
data_preprocessor = dict(
    type='mmpretrain.ClsDataPreprocessor',
    num_classes=100,
    mean=[129.3105, 124.1085, 112.404],
    std=[68.2125, 65.4075, 70.4055],
    to_rgb=False)

train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
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
        split='test',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
