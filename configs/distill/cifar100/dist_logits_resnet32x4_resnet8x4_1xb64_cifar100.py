# DIST from resnet32x4 to resnet8x4 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/dist_cifar100.py']

# The networks of configs/_base_/models/cifar100/resnet8x4.py and
# resnet32x4.py.
model = dict(
    architecture=dict(
        type='ImageClassifier',
        backbone=dict(type='CifarResNet', depth=8, stem_channels=32,
                      base_channels=64),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=100, in_channels=256)),
    teacher=dict(
        type='ImageClassifier',
        backbone=dict(type='CifarResNet', depth=32, stem_channels=32,
                      base_channels=64),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=100, in_channels=256)),
    teacher_ckpt='checkpoints/cifar100/resnet32x4.pth')
