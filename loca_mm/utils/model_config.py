"""The network configs that distillation configs refer to by ``cfg_path``."""
import copy

from mmengine.config import ConfigDict
from mmengine.hub import get_config

# The arguments of ``mmengine.hub.get_model``; the other keys of a reference
# become the model's defaults.
_REFERENCE_KEYS = ('cfg_path', 'pretrained')


def resolve_model_config(model: dict) -> ConfigDict:
    """The model config that a network entry of a config builds.

    The distillation configs give their student and teacher as references,
    ``dict(cfg_path='loca_mm::_base_/models/cifar100/resnet20.py',
    pretrained=False)``, which mmrazor builds with
    ``mmengine.hub.get_model``. This returns what that builds: the referenced
    config's ``model`` (with its top-level ``data_preprocessor``, as
    ``get_model`` does), and the reference's other keys filling in what the
    model lacks (``get_model`` passes them as ``default_args``). A dict
    without ``cfg_path`` is returned as a copy.

    Args:
        model (dict): e.g. ``cfg.model.teacher`` of a distillation config.

    Returns:
        ConfigDict: a model config that ``MODELS.build`` builds.

    Raises:
        ValueError: for ``pretrained=True``, whose weights this cannot
            express (the configs load the teacher from ``teacher_ckpt``).
    """
    if 'cfg_path' not in model:
        return ConfigDict(copy.deepcopy(dict(model)))
    if model.get('pretrained', False):
        raise ValueError(
            f"resolve_model_config: {model['cfg_path']} has pretrained=True; "
            'give the weights as a checkpoint (teacher_ckpt, init_cfg) '
            'instead')
    referenced = get_config(model['cfg_path'])
    resolved = copy.deepcopy(referenced.model)
    if 'data_preprocessor' in referenced:
        resolved.data_preprocessor = referenced.data_preprocessor
    for key, value in model.items():
        if key not in _REFERENCE_KEYS:
            resolved.setdefault(key, copy.deepcopy(value))
    return resolved
