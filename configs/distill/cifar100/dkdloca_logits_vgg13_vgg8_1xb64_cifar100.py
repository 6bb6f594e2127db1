# DKD+LoCa from vgg13 to vgg8 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/dkdloca_cifar100.py']

model = dict(
    architecture=dict(
        cfg_path='loca_mm::_base_/models/cifar100/vgg8.py',
        pretrained=False),
    teacher=dict(
        cfg_path='loca_mm::_base_/models/cifar100/vgg13.py',
        pretrained=False),
    teacher_ckpt='checkpoints/cifar100/vgg13.pth',
    # DKD's beta (the NCKD weight) for this pair.
    distiller=dict(distill_losses=dict(loss_distill=dict(nckd_weight=6.0))))
