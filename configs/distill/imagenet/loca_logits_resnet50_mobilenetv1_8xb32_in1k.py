# LoCa from ResNet-50 (mmpretrain's release, 76.55 top-1) to MobileNetV1 on
# ImageNet-1k, 8 GPUs x 32 images.
_base_ = ['../../_base_/distill/loca_in1k.py']

model = dict(
    architecture=dict(
        cfg_path='loca_mm::_base_/models/imagenet/mobilenetv1.py',
        pretrained=False),
    teacher=dict(
        cfg_path='loca_mm::_base_/models/imagenet/resnet50.py',
        pretrained=False),
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/'
    'resnet50_8xb32_in1k_20210831-ea4938fc.pth')
