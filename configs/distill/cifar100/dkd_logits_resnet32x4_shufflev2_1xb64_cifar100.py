# DKD from resnet32x4 to shufflev2 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/dkd_cifar100.py']

model = dict(
    architecture=dict(
        cfg_path='loca_mm::_base_/models/cifar100/shufflev2.py',
        pretrained=False),
    teacher=dict(
        cfg_path='loca_mm::_base_/models/cifar100/resnet32x4.py',
        pretrained=False),
    teacher_ckpt='checkpoints/cifar100/resnet32x4.pth')

# ShuffleNet/MobileNet students train with lr 0.01.
optim_wrapper = dict(optimizer=dict(lr=0.01))
