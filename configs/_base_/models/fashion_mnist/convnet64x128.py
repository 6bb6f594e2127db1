# The larger teacher of the Fashion-MNIST study: convnet32x64 with twice the
# channels (64, 128) and the classifier on the flattened 128x7x7 map.
_base_ = ['./convnet32x64.py']

model = dict(
    backbone=dict(stage_channels=(64, 128)),
    head=dict(in_channels=128 * 7 * 7))
