"""What importing loca_mm pulls in: the torch-only and Hugging Face parts
without the OpenMMLab stack, the OpenMMLab side whole wherever it is used.

Each check runs in a fresh interpreter: what a process has imported cannot be
undone, and the suite's own process has the whole stack loaded."""
import json
import subprocess
import sys

import pytest

STACK = ('mmengine', 'mmcv', 'mmpretrain', 'mmrazor')

# Makes the OpenMMLab packages unimportable, as on a machine without them.
BLOCK_STACK = f"""
import sys
class BlockStack:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in {STACK!r}:
            raise ModuleNotFoundError(f'No module named {{name!r}} (blocked)')
sys.meta_path.insert(0, BlockStack())
"""

# What the process holds after the imports: the OpenMMLab packages and the
# traces of loca_mm.compat's repairs of torch (names for mmrazor's
# quantization tables, mmengine's checkpoint contents allowed in torch.load,
# torchvision's operator schemas).
REPORT = f"""
import json, sys, torch
from torch.ao.quantization import fuser_method_mappings
report = dict(
    stack=sorted(m for m in sys.modules if m.partition('.')[0] in {STACK!r}),
    quantization_names=hasattr(fuser_method_mappings, 'reverse2'),
    checkpoint_globals=any('history_buffer' in repr(g).lower()
                           for g in torch.serialization.get_safe_globals()),
    torchvision_schema=hasattr(torch.ops.torchvision, 'nms'),
    result=result)
print('REPORT ' + json.dumps(report))
"""

# LoCa-KD on one sample, and the same number from LoCa's rule written out
# (REFERENCE.md): teacher probabilities p, label y, k the largest other
# class, s = alpha / (1 - p_y + p_k); q_i = s p_i, q_y = 1 - s (1 - p_y).
LOCA_KD = """
import torch
from loca_mm.functional import loca_kd_loss
student = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=torch.float64)
teacher = torch.tensor([[3.0, 1.0, 2.5, -2.0]], dtype=torch.float64)
label = torch.tensor([2])
p = torch.softmax(teacher[0] / 4, 0)
s = 0.9 / (1 - p[2] + p[0])
q = s * p
q[2] = 1 - s * (1 - p[2])
log_p_s = torch.log_softmax(student[0] / 4, 0)
expected = 16 * float((q * (q.log() - log_p_s)).sum())
got = float(loca_kd_loss(student, teacher, label, tau=4.0, alpha=0.9).loss)
result = dict(loss=got, expected=expected)
"""

HF_TRAINER = """
import transformers
from loca_mm.integrations.transformers import LoCaDistillTrainer
result = dict(trainer=issubclass(LoCaDistillTrainer, transformers.Trainer))
"""


def run_fresh(code: str) -> dict:
    """Run ``code`` (which sets ``result``) in a fresh interpreter."""
    done = subprocess.run([sys.executable, '-c', code + REPORT],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (line, ) = [x for x in done.stdout.splitlines() if x.startswith('REPORT ')]
    return json.loads(line[len('REPORT '):])


@pytest.mark.parametrize('blocked', [False, True],
                         ids=['stack installed', 'stack unimportable'])
def test_functional_imports_only_torch_and_changes_nothing(blocked):
    report = run_fresh((BLOCK_STACK if blocked else '') + LOCA_KD)
    assert report['stack'] == []
    assert not report['quantization_names']
    assert not report['checkpoint_globals']
    assert not report['torchvision_schema']
    assert report['result']['loss'] == pytest.approx(
        report['result']['expected'], rel=1e-12)


@pytest.mark.parametrize('blocked', [False, True],
                         ids=['stack installed', 'stack unimportable'])
def test_hf_trainer_imports_without_the_openmmlab_stack(blocked):
    # transformers is imported first, as a Hugging Face script does.
    report = run_fresh((BLOCK_STACK if blocked else '') + HF_TRAINER)
    assert report['result'] == dict(trainer=True)
    assert report['stack'] == []
    # None of the OpenMMLab repairs; torchvision's operator schemas only
    # where its compiled ops cannot load (transformers imports torchvision).
    assert not report['quantization_names']
    assert not report['checkpoint_globals']


def test_a_torch_only_helper_of_utils_imports_without_the_stack():
    report = run_fresh(BLOCK_STACK + """
from loca_mm.utils.torchvision_weights import torchvision_resnet_to_mmpretrain
result = dict(found=callable(torchvision_resnet_to_mmpretrain))
""")
    assert report['result'] == dict(found=True)
    assert report['stack'] == []


OPENMMLAB_SIDE = """
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.registry import HOOKS
from mmpretrain.registry import MODELS as CLS_MODELS
from mmrazor.registry import MODELS
loss = MODELS.build(dict(type='LoCaLoss', tau=4.0, alpha=0.9))
result = dict(
    loss=type(loss).__module__,
    hook=HOOKS.get('LoCaLossHook') is not None,
    backbone=CLS_MODELS.get('CifarResNet') is not None,
    scope=MODULE2PACKAGE.get('loca_mm'))
"""
WHOLE_SIDE = dict(loss='loca_mm.models.losses.loca_loss', hook=True,
                  backbone=True, scope='loca_mm')


@pytest.mark.parametrize('first', [
    'import mmengine, loca_mm',  # custom_imports, tools/*.py
    'import loca_mm',  # a plain script, then the stack (below)
    'import loca_mm\nfrom mmrazor.registry import MODELS',
    'import loca_mm.functional, loca_mm.models.losses',
    'import loca_mm.functional, loca_mm\nloca_mm.register_all_modules()',
    'import loca_mm.integrations.transformers, loca_mm.utils',
])
def test_the_openmmlab_side_is_set_up_whole_wherever_it_is_used(first):
    report = run_fresh(first + '\n' + OPENMMLAB_SIDE)
    assert report['result'] == WHOLE_SIDE
    # The repairs ran before mmrazor.models: it imported.
    assert report['quantization_names']
    assert report['checkpoint_globals']


@pytest.mark.parametrize('light_first', [False, True])
def test_custom_imports_in_a_config_sets_up_the_side(tmp_path, light_first):
    # After a light import, import_module('loca_mm') is a no-op: loading
    # mmengine has set the side up already.
    config = tmp_path / 'cfg.py'
    config.write_text(
        "custom_imports = dict(imports=['loca_mm'], "
        'allow_failed_imports=False)\n')
    code = ('import loca_mm.functional\n' if light_first else '') + (
        'from mmengine.config import Config\n'
        f'Config.fromfile({str(config)!r})\n')
    report = run_fresh(code + OPENMMLAB_SIDE)
    assert report['result'] == WHOLE_SIDE


def test_loca_mm_after_transformers_and_peft():
    # Where torchvision loads its ops, as a matching install does (declared
    # by hand here: this machine's torchvision wheel is a CUDA build beside
    # CPU torch), loca_mm imported after transformers and peft has nothing
    # to repair in torchvision and both of its sides work.
    code = """
import torch
torchvision_ops = torch.library.Library('torchvision', 'DEF')
for name in ('nms', 'qnms'):
    torchvision_ops.define(
        name + '(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
import peft, transformers
from transformers import GPT2LMHeadModel
import loca_mm, loca_mm.models
""" + HF_TRAINER + OPENMMLAB_SIDE.replace('result = dict(', 'result.update(')
    report = run_fresh(code)
    assert report['result'] == dict(WHOLE_SIDE, trainer=True)
