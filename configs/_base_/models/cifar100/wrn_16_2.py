# wrn_16_2 of the CIFAR-100 KD zoo: 703,284 parameters. wrn_16_1.py with
# another depth and width (and the zoo's head initialisation).
_base_ = ['./wrn_16_1.py']

model = dict(
    backbone=dict(depth=16, widen_factor=2),
    head=dict(in_channels=128))
