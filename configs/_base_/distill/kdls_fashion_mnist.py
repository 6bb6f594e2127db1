# KD with Logit Standardization (Sun et al., CVPR 2024) on Fashion-MNIST:
# the settings of the LS repository on CIFAR-100 (base temperature 2,
# 1 x cross-entropy + 9 x KD; not tuned for Fashion-MNIST), every other
# setting KD's.
_base_ = ['./kd_fashion_mnist.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_ce=dict(loss_weight=1.0),
            loss_distill=dict(tau=2.0, loss_weight=9.0, standardize=True))))
