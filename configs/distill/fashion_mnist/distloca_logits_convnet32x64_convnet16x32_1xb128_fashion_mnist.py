_base_ = ['../../_base_/distill/distloca_fashion_mnist.py']

# The networks of configs/_base_/models/fashion_mnist/convnet16x32.py and
# convnet32x64.py.
model = dict(
    architecture=dict(
        type='ImageClassifier',
        backbone=dict(type='SmallConvNet', stage_channels=(16, 32)),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=32 * 7 * 7)),
    teacher=dict(
        type='ImageClassifier',
        backbone=dict(type='SmallConvNet', stage_channels=(32, 64)),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=64 * 7 * 7)),
    # tools/train.py configs/vanilla/fashion_mnist/
    # convnet32x64_1xb128_fashion_mnist.py writes it.
    teacher_ckpt='work_dirs/convnet32x64_1xb128_fashion_mnist/epoch_2.pth')
