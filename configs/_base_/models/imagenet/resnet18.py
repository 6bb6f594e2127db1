# mmpretrain's ResNet-18 for ImageNet. Inheriting a package config gives the
# model _scope_='mmpretrain', so it builds also inside an mmrazor model.
_base_ = ['mmpretrain::_base_/models/resnet18.py']

# Start where the DKD code base's ResNet-18 starts: He-normal (fan-out)
# convolutions as mmpretrain's, but no zero-init of the last BN of each
# block and PyTorch's default Linear init instead of N(0, 0.01).
model = dict(
    backbone=dict(zero_init_residual=False), head=dict(init_cfg=None))
