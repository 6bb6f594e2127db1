"""The network configs that distillation configs refer to by ``cfg_path``."""
import copy

from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config


def resolve_model_config(model: dict) -> ConfigDict:
    """The model config that a network entry of a config stands for.

    The distillation configs give their student and teacher as references,
    ``dict(cfg_path='loca_mm::_base_/models/cifar100/resnet20.py',
    pretrained=False)``. The reference's other keys override the referenced
    model config as a config inheriting it through ``_base_`` would: merged
    into it (``Config._merge_a_into_b``), nested dicts key by key, a dict
    with ``_delete_=True`` replacing the one it meets. So
    ``dict(cfg_path=..., head=dict(num_classes=10))`` is the referenced
    network with 10 classes. (``mmengine.hub.get_model``, which mmrazor
    calls for a reference, uses those keys only where the model config lacks
    them, and so drops every override of a key it sets.)

    As ``get_model`` does, the referenced config's top-level
    ``data_preprocessor`` becomes the model's, the model builds in the
    referenced package's scope unless it names its own ``_scope_``, and
    ``pretrained=True`` loads the weights listed in the package's metafile
    (here as ``init_cfg=dict(type='Pretrained', checkpoint=...)``). A dict
    without ``cfg_path`` is returned as a copy.

    Args:
        model (dict): e.g. ``cfg.model.teacher`` of a distillation config.

    Returns:
        ConfigDict: a model config that ``MODELS.build`` builds.
    """
    overrides = ConfigDict(copy.deepcopy(dict(model)))
    if 'cfg_path' not in overrides:
        return overrides
    cfg_path = overrides.pop('cfg_path')
    pretrained = overrides.pop('pretrained', False)
    referenced = get_config(cfg_path, pretrained)
    resolved = copy.deepcopy(referenced.model)
    if 'data_preprocessor' in referenced:
        resolved.data_preprocessor = referenced.data_preprocessor
    if pretrained:
        resolved.init_cfg = dict(
            type='Pretrained', checkpoint=referenced.model_path)
    resolved.setdefault('_scope_', cfg_path.split('::')[0])
    return ConfigDict(Config._merge_a_into_b(overrides, resolved))
