_base_ = ['../../_base_/distill/loca_fashion_mnist.py']
from mmengine.config import Config  # noqa: E402

model_dir = '{{ fileDirname }}/../../_base_/models/fashion_mnist/'
model = dict(
    architecture=Config.fromfile(model_dir + 'convnet16x32.py').model,
    teacher=Config.fromfile(model_dir + 'convnet32x64.py').model,
    # tools/train.py configs/vanilla/fashion_mnist/
    # convnet32x64_1xb128_fashion_mnist.py writes it.
    teacher_ckpt='work_dirs/convnet32x64_1xb128_fashion_mnist/epoch_2.pth')
del Config, model_dir
