# LoCa from ResNet-34 (mmpretrain's release, 73.62 top-1) to ResNet-18 on
# ImageNet-1k, 8 GPUs x 32 images.
_base_ = ['../../_base_/distill/loca_in1k.py']

model = dict(
    architecture=dict(
        cfg_path='loca_mm::_base_/models/imagenet/resnet18.py',
        pretrained=False),
    teacher=dict(
        cfg_path='loca_mm::_base_/models/imagenet/resnet34.py',
        pretrained=False),
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/'
    'resnet34_8xb32_in1k_20210831-f257d4e6.pth')
