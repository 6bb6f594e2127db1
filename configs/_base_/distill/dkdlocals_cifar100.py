# DKD+LoCa on the standardized logits: DKD+LS's settings, the teacher's
# target probability calibrated (LoCa alpha 0.9) on the samples it gets
# wrong. Only TCKD changes: LoCa keeps the non-target ratios NCKD sees.
_base_ = ['./dkdls_cifar100.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_distill=dict(calibrate='wrong', alpha=0.9))))
