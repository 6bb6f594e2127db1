# DKD with Logit Standardization (Sun et al., CVPR 2024) on Fashion-MNIST:
# Fashion-MNIST's DKD settings with both weights scaled by the LS KD weight
# 9 (TCKD 9, NCKD 2 x 9 = 18; not tuned), temperature 4 and the warm-up
# kept.
_base_ = ['./dkd_fashion_mnist.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_distill=dict(
                tckd_weight=9.0, nckd_weight=18.0, standardize=True))))
