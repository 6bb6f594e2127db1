# resnet8x4 trained on CIFAR-100 from the labels alone, 1 GPU x 64 images.
_base_ = [
    '../../_base_/models/cifar100/resnet8x4.py',
    '../../_base_/datasets/cifar100_bs64.py',
    '../../_base_/schedules/cifar100_bs64_240e.py',
    '../../_base_/default_runtime.py',
]
