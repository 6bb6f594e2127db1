# resnet8x4 trained on CIFAR-10 (the JPEG mirror) from the labels alone, 1 GPU x
# 64 images: the CIFAR-100 config with 10 classes and CIFAR-10's data.
_base_ = [
    '../cifar100/resnet8x4_1xb64_cifar100.py',
    '../../_base_/datasets/cifar10_jpeg.py',
]

model = dict(head=dict(num_classes=10))
data_preprocessor = {{_base_.cifar10_data_preprocessor}}
train_dataloader = dict(dataset={{_base_.cifar10_train_dataset}})
val_dataloader = dict(dataset={{_base_.cifar10_val_dataset}})
test_dataloader = dict(dataset={{_base_.cifar10_test_dataset}})
