# LoCa from wrn_40_2 to wrn_16_2 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/loca_cifar100.py']

model = dict(
    architecture=dict(
        cfg_path='loca_mm::_base_/models/cifar100/wrn_16_2.py',
        pretrained=False),
    teacher=dict(
        cfg_path='loca_mm::_base_/models/cifar100/wrn_40_2.py',
        pretrained=False),
    teacher_ckpt='checkpoints/cifar100/wrn_40_2.pth')
