# KD with Logit Standardization (Sun et al., CVPR 2024) on CIFAR-100: each
# row of student and teacher logits z-scored before the softmax, with the
# settings of the LS repository (sunshangquan/logit-standardization-KD,
# `--logit-stand --base-temp 2 --kd-weight 9`): base temperature 2,
# 1 x cross-entropy + 9 x KD. Every other setting is KD's.
_base_ = ['./kd_cifar100.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_ce=dict(loss_weight=1.0),
            loss_distill=dict(tau=2.0, loss_weight=9.0, standardize=True))))
