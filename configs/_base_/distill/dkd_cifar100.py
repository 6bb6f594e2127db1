# DKD (Zhao et al., CVPR 2022) with its CIFAR-100 settings: cross-entropy
# weight 1, alpha (TCKD) 1, beta (NCKD) 8, temperature 4, the distillation
# term ramped up linearly over the first 20 epochs. Experiments override
# nckd_weight (beta) per pair. DKDLoCaLoss without calibration is plain DKD (batch mean, teacher
# detached).
_base_ = ['./logits_cifar100.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_ce=dict(loss_weight=1.0),
            loss_distill=dict(
                type='DKDLoCaLoss',
                tau=4.0,
                tckd_weight=1.0,
                nckd_weight=8.0,
                calibrate='none',
                warmup_epochs=20))))
