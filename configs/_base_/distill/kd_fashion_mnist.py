# KD (Hinton et al., 2015) on Fashion-MNIST: 0.1 x cross-entropy + 0.9 x KD
# at temperature 4, the CIFAR-100 weights. LoCaLoss without calibration is
# plain KD, so KD and LoCa run the same code.
_base_ = ['./logits_fashion_mnist.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_ce=dict(loss_weight=0.1),
            loss_distill=dict(
                type='LoCaLoss', tau=4.0, calibrate='none', loss_weight=0.9))))
