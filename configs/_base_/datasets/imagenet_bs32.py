# ImageNet-1k as in mmpretrain: 32 images per GPU, random-resized 224 crops
# and flips for training, resize 256 + centre crop 224 for evaluation, data
# in data/imagenet/{train,val} (class folders, or meta/{train,val}.txt).
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs32.py']

# The explicit type lets the distillation algorithm (mmrazor scope) build it.
data_preprocessor = dict(type='mmpretrain.ClsDataPreprocessor')

# Keep the 5 loader workers alive between epochs and pin host memory, as
# mmpretrain's tools/train.py does by default. mmpretrain does not download
# ImageNet; loca_mm's LocalImageNet (mmpretrain's ImageNet otherwise) stops
# with the missing path and where to get the data.
train_dataloader = dict(
    persistent_workers=True,
    pin_memory=True,
    dataset=dict(type='LocalImageNet'))
val_dataloader = dict(
    persistent_workers=True,
    pin_memory=True,
    dataset=dict(type='LocalImageNet'))
test_dataloader = val_dataloader
