# A short CPU schedule: SGD (momentum 0.9, weight decay 5e-4) with a cosine
# decay from lr 0.02 over 3 epochs, batch 128.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='CosineAnnealingLR',
    by_epoch=True,
    convert_to_iter_based=True,
    T_max=3)
train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=3)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)
