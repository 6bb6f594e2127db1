"""Helpers of loca_mm's OpenMMLab entry points (``tools/*.py``, mmengine's
``loca_mm`` scope).

Each is imported on first use (PEP 562): they need mmengine, and a module of
this package that needs only torch (:mod:`.torchvision_weights`) is then
imported without the OpenMMLab stack.
"""
import importlib

_EXPORTS = {
    'checkpoint': ('CheckpointMismatchError', 'DamagedCheckpointError',
                   'UnsafeCheckpointError', 'load_checkpoint_file',
                   'state_dict_of'),
    'launch': ('add_launcher_args', 'build_runner',
               'check_checkpoint_schedule', 'check_resume',
               'export_local_rank', 'prepare_distributed_env',
               'release_process_group'),
    'model_config': ('resolve_model_config', ),
    'setup_env': ('register_all_modules', ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items()
              for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    module = importlib.import_module(f'.{_MODULE_OF[name]}', __name__)
    return getattr(module, name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
