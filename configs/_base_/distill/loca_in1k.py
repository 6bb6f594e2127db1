# LoCa (Yang et al., ECAI 2024) on ImageNet: KD's settings, with the teacher
# distribution calibrated (alpha 0.9) on the samples the teacher gets wrong,
# so that the label leads by 1 - alpha.
_base_ = ['./kd_in1k.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_distill=dict(calibrate='wrong', alpha=0.9))))
