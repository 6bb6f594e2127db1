# DIST (Huang et al., NeurIPS 2022) on CIFAR-100: mmrazor's DISTLoss with
# the settings of mmrazor's only published DIST config
# (configs/distill/mmcls/dist/dist_logits_resnet34_resnet18_8xb32_in1k.py,
# ImageNet; mmrazor publishes none for CIFAR-100):
# inter- and intra-class relation weights 1, temperature 1, loss weight 2,
# beside the student's cross-entropy at weight 1. LoCaCalibratedLoss without
# calibration hands DISTLoss the teacher unchanged, so DIST and DIST+LoCa run
# the same code.
_base_ = ['./logits_cifar100.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_ce=dict(loss_weight=1.0),
            loss_distill=dict(
                type='LoCaCalibratedLoss',
                calibrate='none',
                loss=dict(
                    type='DISTLoss',
                    inter_loss_weight=1.0,
                    intra_loss_weight=1.0,
                    tau=1.0,
                    loss_weight=2.0)))))
