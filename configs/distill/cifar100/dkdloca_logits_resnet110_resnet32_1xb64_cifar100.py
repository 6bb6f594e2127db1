# DKD+LoCa from resnet110 to resnet32 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/dkdloca_cifar100.py']

model = dict(
    architecture=dict(
        cfg_path='loca_mm::_base_/models/cifar100/resnet32.py',
        pretrained=False),
    teacher=dict(
        cfg_path='loca_mm::_base_/models/cifar100/resnet110.py',
        pretrained=False),
    teacher_ckpt='checkpoints/cifar100/resnet110.pth',
    # DKD's beta (the NCKD weight) for this pair.
    distiller=dict(distill_losses=dict(loss_distill=dict(nckd_weight=2.0))))
