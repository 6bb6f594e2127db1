# wrn_16_1 of the CIFAR-100 KD zoo: 180,916 parameters.
model = dict(
    _scope_='mmpretrain',  # builds in mmpretrain also inside an mmrazor model
    type='ImageClassifier',
    backbone=dict(type='CifarWideResNet', depth=16, widen_factor=1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        # The zoo's: PyTorch's default Linear weight (Kaiming-uniform with
        # a=sqrt(5), fan-in), zero bias.
        init_cfg=dict(
            type='Kaiming',
            layer='Linear',
            a=5**0.5,
            mode='fan_in',
            nonlinearity='leaky_relu',
            distribution='uniform',
            bias=0),
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
