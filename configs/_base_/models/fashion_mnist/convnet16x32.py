# Student of the Fashion-MNIST experiments: two stride-2 conv stages (16, 32
# channels) and a linear classifier on the flattened 32x7x7 map; 20,538
# parameters.
model = dict(
    _scope_='mmpretrain',  # builds in mmpretrain also inside an mmrazor model
    type='ImageClassifier',
    backbone=dict(type='SmallConvNet', stage_channels=(16, 32)),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=32 * 7 * 7,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
