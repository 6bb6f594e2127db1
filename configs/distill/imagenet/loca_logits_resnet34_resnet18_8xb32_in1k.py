# LoCa from ResNet-34 (mmpretrain's release, 73.62 top-1) to ResNet-18 on
# ImageNet-1k, 8 GPUs x 32 images.
_base_ = ['../../_base_/distill/loca_in1k.py']

from mmengine.config import Config  # noqa: E402

model_dir = '{{ fileDirname }}/../../_base_/models/imagenet/'
model = dict(
    architecture=Config.fromfile(model_dir + 'resnet18.py').model,
    teacher=Config.fromfile(model_dir + 'resnet34.py').model,
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/'
    'resnet34_8xb32_in1k_20210831-f257d4e6.pth')
del Config, model_dir
