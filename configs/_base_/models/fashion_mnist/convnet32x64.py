# Teacher of the Fashion-MNIST experiments: two stride-2 conv stages (32, 64
# channels) and a linear classifier on the flattened 64x7x7 map; 50,282
# parameters.
model = dict(
    _scope_='mmpretrain',  # builds in mmpretrain also inside an mmrazor model
    type='ImageClassifier',
    backbone=dict(type='SmallConvNet', stage_channels=(32, 64)),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64 * 7 * 7,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
