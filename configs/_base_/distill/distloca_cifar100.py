# DIST on a LoCa-calibrated teacher, on CIFAR-100: DIST's settings, with
# the teacher's distribution at DIST's temperature calibrated (LoCa alpha
# 0.9) on the samples it gets wrong.
_base_ = ['./dist_cifar100.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_distill=dict(calibrate='wrong', alpha=0.9))))
