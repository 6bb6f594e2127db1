"""loca_mm's configs used by scope from a project in another folder, as the
OpenMMLab packages' are: ``_base_ = ['loca_mm::...']`` and
``dict(cfg_path='loca_mm::...')`` inside an mmrazor model, from this checkout
(an editable install or PYTHONPATH) and from a wheel."""
import json
import os
import runpy
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from _support import REPO
from tools.analysis_tools.metafile import load_models

EXPERIMENT = 'distill/cifar100/loca_logits_resnet56_resnet20_1xb64_cifar100.py'
METAFILES = ('configs/distill/cifar100/metafile.yml',
             'configs/distill/imagenet/metafile.yml')

# A downstream project's configs: one inherits a loca_mm experiment and swaps
# the student for another zoo network; one only names loca_mm in
# custom_imports and refers to a loca_mm network by cfg_path.
INHERITING = f"""
_base_ = ['loca_mm::{EXPERIMENT}']
model = dict(
    architecture=dict(
        cfg_path='loca_mm::_base_/models/cifar100/resnet32.py',
        pretrained=False),
    # The project builds the networks only: a random teacher on purpose.
    teacher_ckpt=None,
    allow_random_teacher=True)
"""
CFG_PATH_ONLY = """
custom_imports = dict(imports=['loca_mm'], allow_failed_imports=False)
model = dict(
    _scope_='mmrazor',
    type='SingleTeacherDistill',
    architecture=dict(
        cfg_path='loca_mm::_base_/models/cifar100/resnet8.py',
        pretrained=False),
    teacher=dict(
        cfg_path='loca_mm::_base_/models/cifar100/resnet20.py',
        pretrained=False),
    distiller=dict(type='ConfigurableDistiller'))
"""
# The project's checks, run in its folder (in a fresh interpreter, or with
# runpy): argv[1] is the repository whose model files the built networks are
# compared with; with a second argument it also asks mim's `search`.
PROJECT = r"""
import json, os, sys
from mmengine.config import Config

report = dict(before_import=None)
if 'loca_mm' not in sys.modules:
    try:
        Config.fromfile('inheriting.py')
    except AssertionError as error:
        report['before_import'] = str(error)
cfg = Config.fromfile('cfg_path_only.py')  # custom_imports imports loca_mm

from mmengine.registry import DefaultScope
from mmengine.utils import get_installed_path
from mmpretrain.registry import MODELS as CLS_MODELS
from mmrazor.registry import MODELS

def shapes(model):
    return {k: list(v.shape) for k, v in model.state_dict().items()}

def zoo(name):
    path = os.path.join(sys.argv[1], 'configs/_base_/models/cifar100', name)
    return shapes(CLS_MODELS.build(Config.fromfile(path + '.py').model))

report['package_path'] = get_installed_path('loca_mm')
algorithm = MODELS.build(cfg.model)
report['cfg_path_only'] = [
    shapes(algorithm.architecture) == zoo('resnet8'),
    shapes(algorithm.teacher) == zoo('resnet20')]

cfg = Config.fromfile('inheriting.py')
algorithm = MODELS.build(cfg.model)
report['inheriting'] = [
    shapes(algorithm.architecture) == zoo('resnet32'),
    shapes(algorithm.teacher) == zoo('resnet56')]
loss = cfg.model.distiller.distill_losses.loss_distill
report['loss'] = [loss.type, loss.calibrate, loss.alpha,
                  cfg.optim_wrapper.optimizer.lr]
# Dicts inherited through the scope carry _scope_='loca_mm' (those nested in
# them are built under their scope); they must build what the repository's
# own config builds under default_scope mmpretrain.
from mmengine import registry
inherited = ((registry.LOOPS, cfg.val_cfg),
             (registry.DATASETS, cfg.train_dataloader.dataset),
             (registry.TRANSFORMS, cfg.train_dataloader.dataset.pipeline[0]),
             (registry.OPTIMIZERS, cfg.optim_wrapper.optimizer),
             (registry.PARAM_SCHEDULERS, cfg.param_scheduler),
             (registry.HOOKS, cfg.default_hooks.checkpoint),
             (registry.METRICS, cfg.val_evaluator),
             (registry.VISUALIZERS, cfg.visualizer))
built = {}
with DefaultScope.overwrite_default_scope(cfg.default_scope):
    for reg, item in inherited:
        item = dict(item)
        scope = item.pop('_scope_', None)
        with reg.switch_scope_and_registry('loca_mm') as scoped:
            found = scoped.get(item['type'])
        with reg.switch_scope_and_registry(None) as plain:
            expected = plain.get(item['type'])
        built[item['type']] = [scope, found is not None and found is expected]
report['scoped'] = built
if len(sys.argv) > 2:
    from mim.commands.search import get_model_info
    report['mim'] = sorted(get_model_info('loca_mm').index)
print('REPORT ' + json.dumps(report))
"""
def write_project(folder: Path) -> Path:
    """The downstream project's configs and checks, in ``folder``."""
    folder.mkdir(exist_ok=True)
    (folder / 'inheriting.py').write_text(INHERITING)
    (folder / 'cfg_path_only.py').write_text(CFG_PATH_ONLY)
    (folder / 'project.py').write_text(PROJECT)
    return folder


def run_project(folder: Path, pythonpath: str) -> dict:
    """The project's checks in a fresh interpreter, and mim's search."""
    env = dict(os.environ, PYTHONPATH=pythonpath, PYTHONWARNINGS='ignore')
    done = subprocess.run(
        [sys.executable, 'project.py', str(REPO), 'mim'],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (line, ) = [x for x in done.stdout.splitlines() if x.startswith('REPORT ')]
    return json.loads(line[len('REPORT '):])


def assert_project_works(report: dict) -> None:
    assert report['cfg_path_only'] == [True, True]
    assert report['inheriting'] == [True, True]
    assert report['loss'] == ['LoCaLoss', 'wrong', 0.9, 0.05]
    for type_name, (scope, same_class) in report['scoped'].items():
        nested = type_name == 'RandomCrop'  # in the dataset's pipeline
        assert scope == (None if nested else 'loca_mm'), type_name
        assert same_class, type_name


def test_a_project_elsewhere_uses_this_checkouts_configs(
        tmp_path, monkeypatch):
    # In this process, where loca_mm (this checkout) is imported already;
    # the fresh interpreter is the wheel's test below.
    folder = write_project(tmp_path / 'project')
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, 'argv', ['project.py', str(REPO)])
    report = runpy.run_path(str(folder / 'project.py'))['report']
    # The scope reads this checkout (loca_mm/.mim links to configs/), also
    # when loca_mm is an editable install, whose metadata lies elsewhere.
    assert Path(report['package_path']) == REPO / 'loca_mm'
    assert_project_works(report)


def test_package_links_point_at_the_repository():
    mim = REPO / 'loca_mm' / '.mim'
    for name in ('configs', 'tools', 'model-index.yml'):
        assert (mim / name).resolve() == (REPO / name).resolve(), name


def source_copy(folder: Path) -> Path:
    """What a clone holds for building: setup.py and what it packages."""
    for name in ('setup.py', 'MANIFEST.in', 'README.md', 'model-index.yml'):
        shutil.copy2(REPO / name, folder / name)
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for name in ('requirements', 'loca_mm', 'configs', 'tools'):
        shutil.copytree(REPO / name, folder / name, symlinks=True,
                        ignore=ignore)
    return folder


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    source = source_copy(tmp_path_factory.mktemp('source'))
    out = tmp_path_factory.mktemp('dist')
    # setuptools' PEP 517 hook, as `pip install .` calls it.
    subprocess.run(
        [sys.executable, '-c', 'import sys; from setuptools import '
         'build_meta; build_meta.build_wheel(sys.argv[1])', str(out)],
        cwd=source, check=True, capture_output=True)
    (built, ) = out.glob('loca_mm-*.whl')
    return built


def test_wheel_holds_the_configs_tools_and_model_index(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    benchmark = REPO / 'tools' / 'benchmark'
    expected = {
        'loca_mm/.mim/' + str(path.relative_to(REPO))
        for folder in ('configs', 'tools')
        for path in (REPO / folder).rglob('*')
        if path.is_file() and path.suffix in ('.py', '.sh', '.yml', '.md')
        and '__pycache__' not in path.parts and benchmark not in path.parents
    }
    assert expected - names == set()
    # The package holds the method, its adapters and their tools: no
    # benchmarks, no projects (the Fashion-MNIST study).
    assert list(benchmark.glob('*.py'))
    shipped = {n.split('/')[0] for n in names}
    assert not [n for n in names if n.startswith(
        ('loca_mm/.mim/tools/benchmark/', 'loca_mm/studies/'))]
    assert shipped - {'loca_mm'} == {
        n for n in shipped if n.endswith('.dist-info')}
    assert 'loca_mm/.mim/model-index.yml' in names
    assert f'loca_mm/.mim/configs/{EXPERIMENT}' in names
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc')]


@pytest.mark.slow
def test_project_and_mim_search_on_an_installed_wheel(wheel, tmp_path):
    target = tmp_path / 'site'
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
        '--no-compile', '--target', str(target), str(wheel)
    ], check=True, capture_output=True)
    report = run_project(write_project(tmp_path / 'project'), str(target))
    # The installed copy, found the way mmengine finds mmpretrain's.
    assert Path(report['package_path']) == target / 'loca_mm'
    # mmengine knows the scope only once loca_mm is imported: a project's
    # entry point imports it before reading a config that inherits from it;
    # custom_imports is enough for cfg_path (read when the model is built).
    assert 'does not support to load loca_mm config' in \
        report['before_import']
    assert_project_works(report)
    names = {
        entry['Name']
        for metafile in METAFILES for entry in load_models(REPO / metafile)
    }
    assert report['mim'] == sorted(names)
