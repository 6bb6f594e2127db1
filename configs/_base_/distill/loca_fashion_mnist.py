# LoCa (Yang et al., ECAI 2024) on Fashion-MNIST: KD towards the teacher
# distribution calibrated so that the label leads by 1 - alpha on the
# samples the teacher gets wrong; every other setting is KD's.
_base_ = ['./kd_fashion_mnist.py']

model = dict(
    distiller=dict(
        distill_losses=dict(loss_distill=dict(calibrate='wrong', alpha=0.9))))
