# mmpretrain's ResNet-34 for ImageNet. Inheriting a package config gives the
# model _scope_='mmpretrain', so it builds also inside an mmrazor model.
_base_ = ['mmpretrain::_base_/models/resnet34.py']
