"""A CIFAR-100 distillation config on real CIFAR-100 test images.

The ``foolbox`` wheel (3.3.4) carries 20 images of CIFAR-100's test split as
``foolbox/data/cifar100_<index>_<label>.png``. The package is only read from
disk, never imported (its dependencies are not needed):
``pip install --no-deps foolbox==3.3.4``.
"""
import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from loca_mm.utils import resolve_model_config

from _cifar100_utils import (CLS_MODELS, DISTILL_DIR, build_runner,
                             cifar_files_unchecked,  # noqa: F401
                             short_run_options, write_cifar100)

CONFIG = DISTILL_DIR / 'loca_logits_resnet56_resnet20_1xb64_cifar100.py'
# CIFAR-100's normalisation in the CRD/RepDistiller recipe.
MEAN = (0.5071, 0.4867, 0.4408)
STD = (0.2675, 0.2565, 0.2761)


def foolbox_cifar100_images() -> tuple:
    """The 20 images (uint8, N x 32 x 32 x 3, RGB) and their labels."""
    spec = importlib.util.find_spec('foolbox')
    if spec is None:
        pytest.skip('needs the foolbox wheel for its CIFAR-100 images: '
                    'pip install --no-deps foolbox==3.3.4')
    folder = Path(next(iter(spec.submodule_search_locations))) / 'data'
    files = sorted(folder.glob('cifar100_*.png'))
    assert len(files) == 20, files
    images = np.stack(
        [np.asarray(Image.open(f).convert('RGB')) for f in files])
    labels = [int(re.fullmatch(r'cifar100_\d+_(\d+)', f.stem).group(1))
              for f in files]
    return images, np.array(labels)


def fit_head_to(classifier: torch.nn.Module, images: np.ndarray,
                labels: np.ndarray) -> None:
    """Set the classifier's last layer so that it predicts ``labels`` on
    ``images`` (normalised here, independently of the config's pipeline):
    least squares from the features to one-hot targets."""
    inputs = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    inputs = (inputs - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD).view(1, 3, 1, 1)
    classifier.eval()
    with torch.no_grad():
        features = classifier.extract_feat(inputs)[-1].double()
    design = torch.cat([features, torch.ones(len(features), 1).double()], 1)
    targets = torch.nn.functional.one_hot(torch.from_numpy(labels), 100)
    solution = torch.linalg.lstsq(design, targets.double()).solution
    fc = classifier.head.fc
    fc.weight.data.copy_(solution[:-1].T)
    fc.bias.data.copy_(solution[-1])
    with torch.no_grad():
        fitted = classifier.head.fc(features.float()).argmax(1)
    assert fitted.tolist() == labels.tolist()


def test_config_runs_on_real_cifar100_images(
        tmp_path, cifar_files_unchecked):  # noqa: F811
    images, labels = foolbox_cifar100_images()
    data_root = str(tmp_path / 'cifar100')
    write_cifar100(data_root, (images, labels), (images, labels))

    # A teacher that is right on the 20 images exactly when the config reads
    # them as this test does: same pixels, RGB order, normalisation.
    teacher = CLS_MODELS.build(
        resolve_model_config(Config.fromfile(str(CONFIG)).model.teacher))
    fit_head_to(teacher, images, labels)
    teacher_ckpt = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, teacher_ckpt)
    options = short_run_options(
        data_root, str(tmp_path), batch_size=10, teacher_ckpt=teacher_ckpt)
    runner = build_runner(CONFIG, options)

    runner.train()

    hub = runner.message_hub
    assert runner.iter == 2
    assert hub.get_scalar('val/teacher/accuracy/top1').current() == 100.0
    # The student's top-1 on 20 images: a multiple of 5 %.
    student_top1 = hub.get_scalar('val/accuracy/top1').current()
    assert min(abs(student_top1 - 5 * k) for k in range(21)) < 1e-6
    for key in ('train/distill.loss_ce', 'train/distill.loss_distill'):
        assert math.isfinite(hub.get_scalar(key).current())
    assert 0 <= hub.get_scalar('train/loca_ratio').current() <= 1
