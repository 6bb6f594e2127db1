# resnet32x4 trained on CIFAR-10 (the JPEG mirror) from the labels alone, 1 GPU x
# 64 images: the CIFAR-100 recipe with 10 classes and CIFAR-10's data.
_base_ = [
    '../../_base_/models/cifar100/resnet32x4.py',
    '../../_base_/datasets/cifar10_jpeg_bs64.py',
    '../../_base_/schedules/cifar100_bs64_240e.py',
    '../../_base_/default_runtime.py',
]

model = dict(head=dict(num_classes=10))
