# LoCa from wrn_40_2 to shufflev1 on CIFAR-100, 1 GPU x 64 images.
_base_ = ['../../_base_/distill/loca_cifar100.py']

from mmengine.config import Config  # noqa: E402

model_dir = '{{ fileDirname }}/../../_base_/models/cifar100/'
model = dict(
    architecture=Config.fromfile(model_dir + 'shufflev1.py').model,
    teacher=Config.fromfile(model_dir + 'wrn_40_2.py').model,
    teacher_ckpt='checkpoints/cifar100/wrn_40_2.pth')
del Config, model_dir

# ShuffleNet/MobileNet students train with lr 0.01.
optim_wrapper = dict(optimizer=dict(lr=0.01))
