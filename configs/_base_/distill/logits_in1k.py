# Logit distillation on ImageNet-1k with the recipe of mmpretrain's ResNet
# configs, which the DKD ImageNet results also use: 8 GPUs x 32 images, SGD
# (momentum 0.9, weight decay 1e-4) at lr 0.1 per 256 images, 100 epochs,
# lr x0.1 at epochs 30, 60 and 90. A method base adds its loss; an
# experiment adds the student, the teacher and its checkpoint.
_base_ = [
    '../datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    '../default_runtime.py',
    './logits_distiller.py',
]

# lr 0.1 is for 256 images per step: the runner scales it to the actual
# batch (GPUs x 32), so one GPU trains at 0.0125 and keeps the recipe's lr
# per image instead of taking 8 times as large steps.
auto_scale_lr = dict(base_batch_size=256, enable=True)

# Student top-1 every epoch, the frozen teacher's once.
val_cfg = dict(type='TeacherOnceValLoop')
