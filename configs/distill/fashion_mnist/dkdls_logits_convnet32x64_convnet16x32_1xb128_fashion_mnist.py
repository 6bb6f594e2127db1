_base_ = ['../../_base_/distill/dkdls_fashion_mnist.py']

model = dict(
    architecture=dict(
        cfg_path='loca_mm::_base_/models/fashion_mnist/convnet16x32.py',
        pretrained=False),
    teacher=dict(
        cfg_path='loca_mm::_base_/models/fashion_mnist/convnet32x64.py',
        pretrained=False),
    # tools/train.py configs/vanilla/fashion_mnist/
    # convnet32x64_1xb128_fashion_mnist.py writes it.
    teacher_ckpt='work_dirs/convnet32x64_1xb128_fashion_mnist/epoch_2.pth')
