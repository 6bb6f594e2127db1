# DKD (Zhao et al., CVPR 2022) with its ImageNet settings: cross-entropy
# weight 1, alpha (TCKD) 1, beta (NCKD) 0.5, temperature 1, a 1-epoch
# warm-up (the first epoch already has full weight, as in the DKD code base,
# which counts epochs from 1). Experiments override nckd_weight (beta) per pair.
# DKDLoCaLoss without calibration is plain DKD.
_base_ = ['./logits_in1k.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_ce=dict(loss_weight=1.0),
            loss_distill=dict(
                type='DKDLoCaLoss',
                tau=1.0,
                tckd_weight=1.0,
                nckd_weight=0.5,
                calibrate='none',
                warmup_epochs=1))))
