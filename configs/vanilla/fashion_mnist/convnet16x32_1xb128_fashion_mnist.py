# The Fashion-MNIST student trained alone, with the distilled students'
# data (the first 10,000 training images) and schedule (3 epochs).
_base_ = [
    '../../_base_/models/fashion_mnist/convnet16x32.py',
    '../../_base_/datasets/fashion_mnist_bs128.py',
    '../../_base_/schedules/fashion_mnist_3e.py',
    '../../_base_/default_runtime.py',
]

train_dataloader = dict(dataset=dict(indices=10000))
