# DKD+LoCa+LS on Fashion-MNIST: DKD+LS's settings, the teacher's target
# probability calibrated (LoCa alpha 0.9) on the samples it gets wrong.
_base_ = ['./dkdls_fashion_mnist.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_distill=dict(calibrate='wrong', alpha=0.9))))
