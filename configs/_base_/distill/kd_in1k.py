# KD (Hinton et al., 2015) with the DKD code base's ImageNet weights:
# 0.5 x cross-entropy + 0.5 x KD at temperature 1. LoCaLoss without
# calibration is plain KD, so KD and LoCa run the same code.
_base_ = ['./logits_in1k.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_ce=dict(loss_weight=0.5),
            loss_distill=dict(
                type='LoCaLoss', tau=1.0, calibrate='none',
                loss_weight=0.5))))
