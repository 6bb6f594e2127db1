# Logit distillation on Fashion-MNIST with one frozen teacher: data, the
# short CPU schedule, runtime, and the distiller every method shares. A
# method base adds its loss as `loss_distill` and sets the weight of the
# student's cross-entropy `loss_ce`; an experiment adds the networks.
_base_ = [
    '../datasets/fashion_mnist_bs128.py',
    '../schedules/fashion_mnist_3e.py',
    '../default_runtime.py',
    './logits_distiller.py',
]

# The students train on a fixed subset: the first 10,000 training images.
train_dataloader = dict(dataset=dict(indices=10000))

# Student top-1 every validation, the frozen teacher's once.
val_cfg = dict(type='TeacherOnceValLoop')
