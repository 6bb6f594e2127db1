# DKD from ResNet-50 (mmpretrain's release, 76.55 top-1) to MobileNetV1 on
# ImageNet-1k, 8 GPUs x 32 images.
_base_ = ['../../_base_/distill/dkd_in1k.py']

from mmengine.config import Config  # noqa: E402

model_dir = '{{ fileDirname }}/../../_base_/models/imagenet/'
model = dict(
    architecture=Config.fromfile(model_dir + 'mobilenetv1.py').model,
    teacher=Config.fromfile(model_dir + 'resnet50.py').model,
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/'
    'resnet50_8xb32_in1k_20210831-ea4938fc.pth',
    # DKD's beta (the NCKD weight) for this pair.
    distiller=dict(distill_losses=dict(loss_distill=dict(nckd_weight=2.0))))
del Config, model_dir
