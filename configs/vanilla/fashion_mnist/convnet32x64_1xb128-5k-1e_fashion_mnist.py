# A weak Fashion-MNIST teacher, to study distillation where the teacher is
# often wrong: the teacher network trained for 1 epoch on the last 5,000
# training images (none of which the students' first 10,000 hold).
_base_ = ['./convnet32x64_1xb128_fashion_mnist.py']

train_dataloader = dict(dataset=dict(indices=-5000))
train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = dict(T_max=1)
