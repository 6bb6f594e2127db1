# DKD from wrn_40_2 to wrn_40_1 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/dkd_cifar100.py']

from mmengine.config import Config  # noqa: E402

model_dir = '{{ fileDirname }}/../../_base_/models/cifar100/'
model = dict(
    architecture=Config.fromfile(model_dir + 'wrn_40_1.py').model,
    teacher=Config.fromfile(model_dir + 'wrn_40_2.py').model,
    teacher_ckpt='checkpoints/cifar100/wrn_40_2.pth',
    # DKD's beta (the NCKD weight) for this pair.
    distiller=dict(distill_losses=dict(loss_distill=dict(nckd_weight=6.0))))
del Config, model_dir
