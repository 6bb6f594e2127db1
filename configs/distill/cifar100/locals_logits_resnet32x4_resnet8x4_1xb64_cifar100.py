# LoCa+LS from resnet32x4 to resnet8x4 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/locals_cifar100.py']

model = dict(
    architecture=dict(
        cfg_path='loca_mm::_base_/models/cifar100/resnet8x4.py',
        pretrained=False),
    teacher=dict(
        cfg_path='loca_mm::_base_/models/cifar100/resnet32x4.py',
        pretrained=False),
    teacher_ckpt='checkpoints/cifar100/resnet32x4.pth')
