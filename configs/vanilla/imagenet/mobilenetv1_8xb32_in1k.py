# MobileNetV1 trained alone on ImageNet-1k (the students' baseline), with the
# recipe of the distillation configs: 8 GPUs x 32 images, lr 0.1 per 256
# images, 100 epochs, lr x0.1 at epochs 30, 60 and 90, weight decay 1e-4.
_base_ = [
    '../../_base_/models/imagenet/mobilenetv1.py',
    '../../_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    '../../_base_/default_runtime.py',
]
