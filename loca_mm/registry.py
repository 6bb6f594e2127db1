"""loca_mm's OpenMMLab side: the repairs, the registrations and the scope.

Importing this module sets the side up, once: first the compatibility
repairs (:func:`loca_mm.compat.apply`, before mmpretrain, mmrazor or
torchvision is imported), then the ``loca_mm`` registry nodes and config
scope, then loca_mm's datasets, engine parts and models, which register
themselves in mmpretrain's, mmengine's and mmrazor's registries. mmengine
imports this module by itself whenever it resolves the ``loca_mm`` scope;
:mod:`loca_mm` says when else it is imported.

Other projects use loca_mm's configs by scope, as they use mmpretrain's:
``_base_ = ['loca_mm::distill/cifar100/...py']`` or, inside an mmrazor model,
``dict(cfg_path='loca_mm::_base_/models/cifar100/resnet20.py')``. mmengine
resolves a scope only if it is listed in its ``MODULE2PACKAGE`` table
(mmengine 0.10.7 knows the OpenMMLab packages only), so importing this module
adds ``loca_mm`` there. The configs themselves are
read from ``loca_mm/.mim/configs`` (links to the repository's ``configs/``).

A config inherited through a scope gives every top-level dict with a
``type`` the ``_scope_`` ``'loca_mm'``; mmengine then builds it in the
``loca_mm`` node of each registry tree. Those nodes are children of
mmpretrain's, the default scope of loca_mm's configs, so a scoped config
builds what the same config builds from the repository. loca_mm's own modules
are registered in mmrazor's and mmpretrain's registries, which every node
here reaches.
"""
from . import compat

compat.apply()

from mmengine.config.utils import MODULE2PACKAGE  # noqa: E402
from mmengine.registry import Registry  # noqa: E402
from mmpretrain import registry as mmpretrain  # noqa: E402
from mmpretrain.utils import \
    register_all_modules as register_mmpretrain  # noqa: E402

SCOPE = 'loca_mm'
MODULE2PACKAGE.setdefault(SCOPE, 'loca_mm')
# The nodes below look names up in their mmpretrain parents, which hold only
# what has been imported.
register_mmpretrain(init_default_scope=False)

RUNNERS = Registry('runner', parent=mmpretrain.RUNNERS, scope=SCOPE)
RUNNER_CONSTRUCTORS = Registry(
    'runner constructor', parent=mmpretrain.RUNNER_CONSTRUCTORS, scope=SCOPE)
LOOPS = Registry('loop', parent=mmpretrain.LOOPS, scope=SCOPE)
HOOKS = Registry('hook', parent=mmpretrain.HOOKS, scope=SCOPE)
LOG_PROCESSORS = Registry(
    'log processor', parent=mmpretrain.LOG_PROCESSORS, scope=SCOPE)
OPTIMIZERS = Registry('optimizer', parent=mmpretrain.OPTIMIZERS, scope=SCOPE)
OPTIM_WRAPPERS = Registry(
    'optimizer_wrapper', parent=mmpretrain.OPTIM_WRAPPERS, scope=SCOPE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=mmpretrain.OPTIM_WRAPPER_CONSTRUCTORS,
    scope=SCOPE)
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=mmpretrain.PARAM_SCHEDULERS, scope=SCOPE)
DATASETS = Registry('dataset', parent=mmpretrain.DATASETS, scope=SCOPE)
DATA_SAMPLERS = Registry(
    'data sampler', parent=mmpretrain.DATA_SAMPLERS, scope=SCOPE)
TRANSFORMS = Registry('transform', parent=mmpretrain.TRANSFORMS, scope=SCOPE)
MODELS = Registry('model', parent=mmpretrain.MODELS, scope=SCOPE)
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=mmpretrain.MODEL_WRAPPERS, scope=SCOPE)
WEIGHT_INITIALIZERS = Registry(
    'weight initializer', parent=mmpretrain.WEIGHT_INITIALIZERS, scope=SCOPE)
TASK_UTILS = Registry('task util', parent=mmpretrain.TASK_UTILS, scope=SCOPE)
METRICS = Registry('metric', parent=mmpretrain.METRICS, scope=SCOPE)
EVALUATORS = Registry('evaluator', parent=mmpretrain.EVALUATORS, scope=SCOPE)
VISUALIZERS = Registry(
    'visualizer', parent=mmpretrain.VISUALIZERS, scope=SCOPE)
VISBACKENDS = Registry(
    'vis_backend', parent=mmpretrain.VISBACKENDS, scope=SCOPE)

# Last: these register into the registries above and their parents.
from . import datasets, engine, models  # noqa: E402,F401
