"""Compatibility fixes for running the OpenMMLab 2.x stack on current PyTorch.

mmrazor 1.0.0, mmengine 0.10.7 and the PyPI torchvision wheel were released
for older PyTorch versions. Each function below repairs one measured break,
checks first whether the version or feature it finds has the break, and does
nothing otherwise, so the module is safe on any supported version (torch 2.11
as well as the pinned 2.13) and to apply again.

:func:`apply` runs all of them; :mod:`loca_mm.registry` (loca_mm's OpenMMLab
side) calls it before it imports mmpretrain or mmrazor. Only
:func:`fix_torchvision_ops_schema` concerns more than OpenMMLab: the Hugging
Face side (:mod:`loca_mm.integrations`) calls it too, because transformers
imports torchvision. Importing this module changes nothing, and nothing here
changes site-packages on disk.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pickle
import warnings

import torch

__all__ = ['apply', 'fix_torchvision_ops_schema']


def _loads_weights_only_by_default() -> bool:
    """Whether ``torch.load`` loads weights only by default (torch>=2.6)."""
    return torch.__version__ >= (2, 6)


def _torchvision_ops_library() -> str | None:
    spec = importlib.util.find_spec('torchvision')
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), '_C.so')
    return path if os.path.exists(path) else None


def fix_torchvision_ops_schema() -> bool:
    """Declare ``torchvision::nms``/``qnms`` when torchvision's ops fail to load.

    PyPI's torchvision 0.28 is a CUDA build; next to the CPU torch wheel its
    compiled library does not load, and ``import torchvision`` then aborts in
    its fake-kernel registrations with "operator torchvision::nms does not
    exist". Declaring the two schemas lets torchvision import; the transforms
    and models that classification uses need none of the compiled ops.

    Returns:
        bool: True if the schemas were declared.
    """
    # Looked up first: the look-up may run this function itself (through
    # loca_mm's import hook), and then the schemas are there already.
    library = _torchvision_ops_library()
    if library is None or hasattr(torch.ops.torchvision, 'nms'):
        return False
    try:
        torch.ops.load_library(library)
        return False
    except (OSError, RuntimeError):
        pass
    lib = torch.library.Library('torchvision', 'DEF')  # noqa: TOR901
    lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    lib.define('qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    # The Library object must outlive this call or the schemas are removed.
    _KEEP_ALIVE.append(lib)
    return True


_KEEP_ALIVE: list = []


def fix_mmrazor_quantization_imports() -> bool:
    """Restore the torch.ao names that mmrazor 1.0.0 imports at start-up.

    mmrazor builds quantization backend tables when ``mmrazor.models`` is
    imported. PyTorch 2.x removed the helpers it uses (``reverse2``,
    ``reverse3``, ``reverse_sequential_wrapper2``, three private
    ``BackendPatternConfig`` setters) and no longer binds
    ``torch.ao.quantization.backend_config.utils`` as an attribute; mmrazor
    then reports ``torch>=1.13 is not installed properly``. Distillation uses
    none of these tables, so faithful small equivalents are enough.

    Returns:
        bool: True if anything was restored.
    """
    try:
        from torch.ao.quantization import fuser_method_mappings as fmm
        from torch.ao.quantization.backend_config import BackendPatternConfig
    except ImportError:
        return False
    from torch.ao.quantization import backend_config
    changed = not hasattr(backend_config, 'utils')
    importlib.import_module('torch.ao.quantization.backend_config.utils')

    def reverse2(fuser):
        return lambda is_qat, x, y: fuser(is_qat, y, x)

    def reverse3(fuser):
        return lambda is_qat, x, w: fuser(is_qat, w[1], w[0], x)

    def reverse_sequential_wrapper2(sequential):
        return lambda is_qat, x, y: sequential(y, x)

    for name, value in (('reverse2', reverse2), ('reverse3', reverse3),
                        ('reverse_sequential_wrapper2',
                         reverse_sequential_wrapper2)):
        if not hasattr(fmm, name):
            setattr(fmm, name, value)
            changed = True

    def make_setter(attribute):

        def setter(self, value):
            setattr(self, attribute, value)
            return self

        return setter

    for name in ('_set_input_output_observed',
                 '_set_overwrite_output_fake_quantize',
                 '_set_overwrite_output_observer'):
        if not hasattr(BackendPatternConfig, name):
            setattr(BackendPatternConfig, name, make_setter(name[4:]))
            changed = True
    return changed


def fix_checkpoint_safe_globals() -> bool:
    """Allow-list the objects an mmengine checkpoint holds for torch.load.

    Since PyTorch 2.6 ``torch.load`` defaults to ``weights_only=True``;
    mmengine 0.10.7 does not pass the argument, so loading any Runner
    checkpoint (``load_from``, ``resume``, ``teacher_ckpt``) fails on the
    message-hub ``HistoryBuffer`` and numpy scalars stored in ``meta``.

    Returns:
        bool: True if globals were added (False before torch 2.6, which
        loads any pickle by default, or when they are allowed already).
    """
    if not _loads_weights_only_by_default():
        return False
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    if HistoryBuffer in torch.serialization.get_safe_globals():
        return False
    try:  # numpy >= 2 moved the pickling helpers to numpy._core
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:
        from numpy.core.multiarray import _reconstruct, scalar
    numeric = ('float16', 'float32', 'float64', 'int8', 'int16', 'int32',
               'int64', 'uint8', 'bool')
    safe = [HistoryBuffer, np.ndarray, np.dtype, _reconstruct, scalar]
    safe += [type(np.dtype(name)) for name in numeric]  # dtype classes
    safe += [np.dtype(name).type for name in numeric]  # scalar types

    def history_buffer_method(owner, name):
        # A HistoryBuffer pickles its statistics methods (HistoryBuffer.min,
        # ...) as getattr(HistoryBuffer, 'min'). Plain getattr would fetch
        # any attribute of any allow-listed object (a bound method of a
        # numpy class, say); this stands in for it and fetches only
        # HistoryBuffer's own methods. (Only one entry may be registered
        # under 'builtins.getattr': torch keeps them in a set, so with two
        # the one that wins changes from process to process.)
        if owner is HistoryBuffer and callable(vars(owner).get(name)):
            return getattr(owner, name)
        raise pickle.UnpicklingError(
            f'weights-only load refuses getattr({owner!r}, {name!r})')

    safe.append((history_buffer_method, 'builtins.getattr'))
    torch.serialization.add_safe_globals(safe)
    return True


def explain_damaged_checkpoints() -> bool:
    """Make mmengine name a damaged checkpoint file instead of passing on
    torch's advice.

    mmengine loads local checkpoints (``load_from``, ``resume``,
    ``teacher_ckpt``, ``init_cfg``) with a bare ``torch.load``; since
    PyTorch 2.6 a truncated or garbage file then fails with a miniz or
    unpickler error that advises ``weights_only=False``, wrong for a corrupt
    file and unsafe for an untrusted one. Registered through mmengine's
    ``CheckpointLoader.register_scheme``, :func:`loca_mm.utils.checkpoint.
    load_from_local` loads the same files and says which file is damaged.

    Returns:
        bool: True if the loader was registered (False before torch 2.6,
        whose ``torch.load`` gives no such advice, or when it is already).
    """
    if not _loads_weights_only_by_default():
        return False
    from mmengine.runner import CheckpointLoader

    from loca_mm.utils.checkpoint import load_from_local
    if CheckpointLoader._schemes.get('') is load_from_local:
        return False
    CheckpointLoader.register_scheme('', load_from_local, force=True)
    return True


def fix_cpu_init_dist() -> bool:
    """Let mmengine start multi-process (gloo) training on a machine without CUDA.

    mmengine 0.10.7's ``_init_dist_pytorch`` always calls
    ``torch.cuda.set_device``, which fails where CUDA is absent, so
    ``dist_train.sh`` could not run on CPU. Without CUDA the patched version
    skips the device selection and uses the gloo backend; with CUDA it is not
    installed at all.

    Returns:
        bool: True if mmengine's function was replaced.
    """
    if torch.cuda.is_available():
        return False
    from mmengine.dist import utils as dist_utils
    if getattr(dist_utils._init_dist_pytorch, '_loca_mm_cpu', False):
        return False

    def init_dist_pytorch_cpu(backend='gloo', init_backend='torch', **kwargs):
        if backend != 'gloo':
            # nccl needs CUDA; fall back instead of failing inside torch.
            backend = 'gloo'
        torch.distributed.init_process_group(backend=backend, **kwargs)

    init_dist_pytorch_cpu._loca_mm_cpu = True
    dist_utils._init_dist_pytorch = init_dist_pytorch_cpu
    return True


def _installed_in_place() -> bool:
    """Whether loca_mm's files lie where mmengine looks for them: in
    ``<distribution location>/loca_mm``, or (not installed, on the path)
    where the import system finds them, mmengine's fallback."""
    try:
        distribution = importlib.metadata.distribution('loca_mm')
    except importlib.metadata.PackageNotFoundError:
        return True
    return os.path.isdir(distribution.locate_file('loca_mm'))


def fix_editable_install_path() -> bool:
    """Let mmengine find the files of an editable (``pip install -e``) install.

    mmengine 0.10.7 reads a package's configs (``pkg::`` scopes,
    ``cfg_path``) from ``<distribution location>/<package>``. A PEP 660
    editable install (the only kind pip >= 25.3 makes) keeps its metadata in
    site-packages and the package in the source tree, so that folder does not
    exist. Where it does not, the patched lookup asks the import system, which
    knows the source tree; every other answer is mmengine's.

    Returns:
        bool: True if mmengine's lookup was replaced (False where it finds
        loca_mm's folder itself: a regular install, or a source checkout).
    """
    import mmengine.utils
    from mmengine.config import config as config_module
    from mmengine.hub import hub as hub_module
    from mmengine.utils import package_utils
    original = package_utils.get_installed_path
    if getattr(original, '_loca_mm_editable', False) or _installed_in_place():
        return False

    def get_installed_path(package: str) -> str:
        path = original(package)
        if os.path.isdir(path):
            return path
        spec = importlib.util.find_spec(os.path.basename(path))
        if spec is None or not spec.submodule_search_locations:
            return path
        return list(spec.submodule_search_locations)[0]

    get_installed_path._loca_mm_editable = True
    for module in (mmengine.utils, package_utils, config_module, hub_module):
        module.get_installed_path = get_installed_path
    return True


def quiet_mmcv_lite_ops_warning() -> bool:
    """Silence mmcv-lite's warning about its missing compiled ops.

    mmcv-lite has no compiled ``mmcv._ext``; importing mmcv's transformer bricks then
    warns that ``MultiScaleDeformableAttention`` is unavailable, on every
    start. Classification and distillation never use it.

    Returns:
        bool: True if the warning filter was added (mmcv-lite installed).
    """
    if importlib.util.find_spec('mmcv') is None or importlib.util.find_spec(
            'mmcv._ext') is not None:  # no mmcv, or the full one
        return False
    message = 'Fail to import ``MultiScaleDeformableAttention``'
    if any(action == 'ignore' and pattern is not None
           and pattern.pattern == message
           for action, pattern, *_ in warnings.filters):
        return False
    warnings.filterwarnings('ignore', message=message)
    return True


def apply() -> dict:
    """Apply every fix that the installed versions need.

    Returns:
        dict: fix name -> whether it changed anything, for logging and tests.
    """
    return {
        'torchvision_ops_schema': fix_torchvision_ops_schema(),
        'mmrazor_quantization_imports': fix_mmrazor_quantization_imports(),
        'checkpoint_safe_globals': fix_checkpoint_safe_globals(),
        'damaged_checkpoint_errors': explain_damaged_checkpoints(),
        'cpu_init_dist': fix_cpu_init_dist(),
        'mmcv_lite_ops_warning': quiet_mmcv_lite_ops_warning(),
        'editable_install_path': fix_editable_install_path(),
    }
