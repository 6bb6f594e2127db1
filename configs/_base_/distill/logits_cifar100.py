# Logit distillation on CIFAR-100 with one frozen teacher: data, the CRD/DKD
# schedule, runtime, and the distiller every method shares. A method base
# adds its loss as `loss_distill` and sets the weight of the student's
# cross-entropy `loss_ce`; an experiment adds the student and teacher
# networks and the teacher's checkpoint.
_base_ = [
    '../datasets/cifar100_bs64.py',
    '../schedules/cifar100_bs64_240e.py',
    '../default_runtime.py',
    './logits_distiller.py',
]

# Student top-1 every epoch, the frozen teacher's once.
val_cfg = dict(type='TeacherOnceValLoop')
