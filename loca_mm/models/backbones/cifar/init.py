"""Initialisation shared by the zoo's WRN, VGG and MobileNetV2."""

# He-normal with fan-out and zero bias for convs: the zoo's
# ``normal_(0, sqrt(2 / (k * k * out_channels)))``. BNs keep PyTorch's
# weight 1 / bias 0, and the head's Linear gets mmpretrain's N(0, 0.01).
ZOO_CONV_INIT = dict(type='Kaiming', layer='Conv2d')
