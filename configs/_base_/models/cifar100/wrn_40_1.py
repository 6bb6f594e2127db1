# wrn_40_1 of the CIFAR-100 KD zoo: 569,780 parameters. wrn_16_1.py with
# another depth and width (and the zoo's head initialisation).
_base_ = ['./wrn_16_1.py']

model = dict(
    backbone=dict(depth=40, widen_factor=1),
    head=dict(in_channels=64))
