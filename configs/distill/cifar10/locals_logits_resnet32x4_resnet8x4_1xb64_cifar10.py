# LoCa+LS from resnet32x4 to resnet8x4 on CIFAR-10 (the JPEG mirror), 1 GPU x
# 64 images: the CIFAR-100 config with 10 classes and CIFAR-10's data.
_base_ = [
    '../cifar100/locals_logits_resnet32x4_resnet8x4_1xb64_cifar100.py',
    '../../_base_/datasets/cifar10_jpeg.py',
]

model = dict(
    # Merged into the networks' model files.
    architecture=dict(head=dict(num_classes=10)),
    teacher=dict(head=dict(num_classes=10)),
    # tools/train.py configs/vanilla/cifar10/resnet32x4_1xb64_cifar10.py
    # writes it (copy or link its last epoch here).
    teacher_ckpt='checkpoints/cifar10/resnet32x4.pth')
data_preprocessor = {{_base_.cifar10_data_preprocessor}}
train_dataloader = dict(dataset={{_base_.cifar10_train_dataset}})
val_dataloader = dict(dataset={{_base_.cifar10_val_dataset}})
test_dataloader = dict(dataset={{_base_.cifar10_test_dataset}})
