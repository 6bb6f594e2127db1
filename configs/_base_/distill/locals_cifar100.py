# LoCa on the standardized logits (LoCa+LS): KD+LS's settings, the teacher
# distribution of the standardized logits calibrated (LoCa alpha 0.9) on the
# samples it gets wrong.
_base_ = ['./kdls_cifar100.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_distill=dict(calibrate='wrong', alpha=0.9))))
