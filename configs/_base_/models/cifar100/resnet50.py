# ResNet50 of the CIFAR-100 KD zoo: 23,705,252 parameters.
model = dict(
    _scope_='mmpretrain',  # builds in mmpretrain also inside an mmrazor model
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=50, zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=2048,
        # PyTorch's default Linear init, as in the zoo's code.
        init_cfg=None,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
