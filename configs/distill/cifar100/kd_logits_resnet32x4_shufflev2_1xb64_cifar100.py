# KD from resnet32x4 to shufflev2 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/kd_cifar100.py']

from mmengine.config import Config  # noqa: E402

model_dir = '{{ fileDirname }}/../../_base_/models/cifar100/'
model = dict(
    architecture=Config.fromfile(model_dir + 'shufflev2.py').model,
    teacher=Config.fromfile(model_dir + 'resnet32x4.py').model,
    teacher_ckpt='checkpoints/cifar100/resnet32x4.pth')
del Config, model_dir

# ShuffleNet/MobileNet students train with lr 0.01.
optim_wrapper = dict(optimizer=dict(lr=0.01))
