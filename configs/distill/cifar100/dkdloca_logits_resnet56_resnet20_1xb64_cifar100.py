# DKD+LoCa from resnet56 to resnet20 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/dkdloca_cifar100.py']

from mmengine.config import Config  # noqa: E402

model_dir = '{{ fileDirname }}/../../_base_/models/cifar100/'
model = dict(
    architecture=Config.fromfile(model_dir + 'resnet20.py').model,
    teacher=Config.fromfile(model_dir + 'resnet56.py').model,
    teacher_ckpt='checkpoints/cifar100/resnet56.pth',
    # DKD's beta (the NCKD weight) for this pair.
    distiller=dict(distill_losses=dict(loss_distill=dict(nckd_weight=2.0))))
del Config, model_dir
