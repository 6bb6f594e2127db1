# The Fashion-MNIST teacher: all 60,000 training images, 2 epochs.
_base_ = [
    '../../_base_/models/fashion_mnist/convnet32x64.py',
    '../../_base_/datasets/fashion_mnist_bs128.py',
    '../../_base_/schedules/fashion_mnist_3e.py',
    '../../_base_/default_runtime.py',
]

train_cfg = dict(max_epochs=2, val_interval=2)
param_scheduler = dict(T_max=2)
