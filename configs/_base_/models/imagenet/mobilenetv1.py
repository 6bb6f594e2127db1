# MobileNetV1 for ImageNet, the layout of the DKD code base (4,231,976
# parameters with this 1000-class head). The backbone is loca_mm's.
model = dict(
    _scope_='mmpretrain',  # builds in mmpretrain also inside an mmrazor model
    type='ImageClassifier',
    backbone=dict(type='MobileNetV1', out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        # PyTorch's default Linear init, as the DKD code base's.
        init_cfg=None,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
