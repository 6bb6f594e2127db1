# wrn_40_2 of the CIFAR-100 KD zoo: 2,255,156 parameters. wrn_16_1.py with
# another depth and width (and the zoo's head initialisation).
_base_ = ['./wrn_16_1.py']

model = dict(
    backbone=dict(depth=40, widen_factor=2),
    head=dict(in_channels=128))
