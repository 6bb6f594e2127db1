# KD (Hinton et al., 2015) with the CRD/DKD CIFAR-100 weights:
# 0.1 x cross-entropy + 0.9 x KD at temperature 4. LoCaLoss without
# calibration is plain KD, so KD and LoCa run the same code.
_base_ = ['./logits_cifar100.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_ce=dict(loss_weight=0.1),
            loss_distill=dict(
                type='LoCaLoss', tau=4.0, calibrate='none',
                loss_weight=0.9))))
