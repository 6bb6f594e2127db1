# DKD (Zhao et al., CVPR 2022) on Fashion-MNIST: cross-entropy weight 1,
# alpha (TCKD) 1, temperature 4, the distillation term at half weight in the
# first of the 3 epochs (warm-up 2), and beta (NCKD) 2 instead of
# CIFAR-100's 8, which trained worse in this short schedule
# (docs/benchmarks.md). DKDLoCaLoss without calibration is plain DKD.
_base_ = ['./logits_fashion_mnist.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_ce=dict(loss_weight=1.0),
            loss_distill=dict(
                type='DKDLoCaLoss',
                tau=4.0,
                tckd_weight=1.0,
                nckd_weight=2.0,
                calibrate='none',
                warmup_epochs=2))))
