# resnet110 of the CIFAR-100 KD zoo: 1,736,564 parameters.
model = dict(
    _scope_='mmpretrain',  # builds in mmpretrain also inside an mmrazor model
    type='ImageClassifier',
    backbone=dict(type='CifarResNet', depth=110),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        # PyTorch's default Linear init, as in the zoo's code.
        init_cfg=None,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
