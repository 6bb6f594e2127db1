# Runtime shared by the loca_mm configs.
custom_imports = dict(imports=['loca_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Keep the last epoch (to resume) and the epoch of the best student
    # top-1 (what mdistiller and the DKD/CRD tables report). The key is the
    # student's: TeacherOnceValLoop names the teacher's 'teacher/accuracy/top1'.
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=1,
        save_best='accuracy/top1',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# Scalars (losses, lr, accuracy, LoCa's loca_ratio/loca_scale) go to
# <work_dir>/<timestamp>/vis_data/scalars.json. For TensorBoard (package
# `tensorboard`), add dict(type='TensorboardVisBackend') to vis_backends, or
# swap the local backend for it on the command line:
#   --cfg-options visualizer.vis_backends.0.type=TensorboardVisBackend
visualizer = dict(
    type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])

# mmengine prints the mean over the last 10 iterations for losses and times
# but the latest value of other scalars. LoCaLossHook gives loca_ratio and
# loca_scale one value per log entry (exact over the logged window), so the
# mean over their history is that value.
log_processor = dict(
    mean_pattern=r'.*(loss|time|data_time|grad_norm|loca_ratio|loca_scale).*')

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
