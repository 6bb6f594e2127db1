# LoCa+LS from resnet32x4 to resnet8x4 on CIFAR-10 (the JPEG mirror), 1 GPU x
# 64 images: the CIFAR-100 config with 10 classes and the data of
# configs/_base_/datasets/cifar10_jpeg_bs64.py.
_base_ = ['../cifar100/locals_logits_resnet32x4_resnet8x4_1xb64_cifar100.py']

classes = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
           'horse', 'ship', 'truck')
model = dict(
    # Merged into the networks' model files.
    architecture=dict(head=dict(num_classes=10)),
    teacher=dict(head=dict(num_classes=10)),
    # tools/train.py configs/vanilla/cifar10/resnet32x4_1xb64_cifar10.py
    # writes it (copy or link its last epoch here).
    teacher_ckpt='checkpoints/cifar10/resnet32x4.pth')
data_preprocessor = dict(
    num_classes=10,
    mean=[125.307, 122.961, 113.8575],
    std=[62.985, 62.0925, 66.708],
    to_rgb=True)
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root='data/cifar10_images',
        data_prefix='train',
        metainfo=dict(classes=classes),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='RandomCrop', crop_size=32, padding=4),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
            dict(type='PackInputs'),
        ]))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root='data/cifar10_images',
        data_prefix='test',
        metainfo=dict(classes=classes),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackInputs')]))
test_dataloader = val_dataloader
