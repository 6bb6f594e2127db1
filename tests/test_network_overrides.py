"""A config that inherits a distillation config and overrides keys of its
student or teacher, given there by reference (``cfg_path``), builds the
networks it says, from its file and from ``--cfg-options``, as a config
inheriting the network's file through ``_base_`` would."""
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from _cifar100_utils import (MODEL_DIR, cifar_files_unchecked,  # noqa: F401
                             short_run_options, write_cifar100)
from _support import command_line_options, load_tool
from loca_mm.utils import resolve_model_config
from mmpretrain.registry import MODELS as CLS_MODELS

EXPERIMENT = 'distill/cifar100/loca_logits_resnet56_resnet20_1xb64_cifar100.py'
# A user retargets the experiment to a 10-class data set with smaller
# networks: resnet8 for both, the teacher's head replaced as a whole.
RETARGETED = f"""
_base_ = ['loca_mm::{EXPERIMENT}']
model = dict(
    architecture=dict(backbone=dict(depth=8)),
    teacher=dict(
        backbone=dict(depth=8),
        head=dict(_delete_=True, type='LinearClsHead', num_classes=10,
                  in_channels=64)))
"""
NUM_CLASSES = 10


def resnet8_with_10_classes() -> dict:
    """The network both overrides describe, written out."""
    model = Config.fromfile(str(MODEL_DIR / 'resnet8.py')).model
    model.head.num_classes = NUM_CLASSES
    return model


@pytest.fixture
def ten_classes(tmp_path, cifar_files_unchecked):  # noqa: F811
    """4 training and 2 test images of 10 classes in CIFAR-100's format."""
    rng = np.random.default_rng(0)
    split = [(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
              rng.integers(0, NUM_CLASSES, n)) for n in (4, 2)]
    write_cifar100(str(tmp_path / 'data'), *split)
    return str(tmp_path / 'data')


def test_overrides_of_referenced_networks_are_built(ten_classes, tmp_path,
                                                    monkeypatch):
    config = tmp_path / 'retargeted.py'
    config.write_text(RETARGETED)
    teacher_ckpt = str(tmp_path / 'teacher.pth')
    teacher = CLS_MODELS.build(resnet8_with_10_classes()).state_dict()
    torch.save({'state_dict': teacher}, teacher_ckpt)
    work_dir = tmp_path / 'work'
    options = short_run_options(ten_classes, str(work_dir), batch_size=2,
                                teacher_ckpt=teacher_ckpt)
    del options['default_hooks.checkpoint']  # the checkpoint is checked
    # The student's classes from the command line.
    options['model.architecture.head.num_classes'] = NUM_CLASSES
    monkeypatch.setattr(sys, 'argv', [
        'train.py', str(config), '--work-dir', str(work_dir),
        '--cfg-options'
    ] + command_line_options(options))
    load_tool('train.py').main()

    saved = torch.load(work_dir / 'epoch_1.pth', weights_only=False)
    state = saved['state_dict']
    expected = CLS_MODELS.build(resnet8_with_10_classes()).state_dict()
    for part in ('architecture.', 'teacher.'):
        built = {k[len(part):]: v.shape for k, v in state.items()
                 if k.startswith(part)}
        assert built == {k: v.shape for k, v in expected.items()}, part
    assert state['architecture.head.fc.weight'].shape == (NUM_CLASSES, 64)
    # The frozen teacher is the checkpoint given for the overridden network.
    for key, value in teacher.items():
        torch.testing.assert_close(state[f'teacher.{key}'], value, msg=key)

    # The dumped config says what was built.
    dumped = Config.fromfile(str(work_dir / 'retargeted.py'))
    for network in (dumped.model.architecture, dumped.model.teacher):
        assert {
            k: v.shape
            for k, v in CLS_MODELS.build(
                resolve_model_config(network)).state_dict().items()
        } == {k: v.shape for k, v in expected.items()}
    # _delete_ replaced the referenced head as a whole (its loss and
    # init_cfg are gone), as through _base_.
    assert resolve_model_config(dumped.model.teacher).head == dict(
        type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=64)
