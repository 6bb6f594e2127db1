# DKD with Logit Standardization (Sun et al., CVPR 2024) on CIFAR-100, as the
# LS repository's tools/train.py sets it for `--logit-stand --kd-weight 9`:
# TCKD weight 1 x 9 = 9 and NCKD weight 9 x 9 = 81 (it scales the already
# scaled TCKD weight), temperature 4 (its `--base-temp` sets KD's
# temperature, which DKD does not read). Cross-entropy 1 and the 20-epoch
# warm-up are DKD's.
_base_ = ['./dkd_cifar100.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_distill=dict(
                tckd_weight=9.0, nckd_weight=81.0, standardize=True))))
