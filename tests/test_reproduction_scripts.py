"""tools/model_converters/prepare_cifar100_teachers.sh on an archive in the
layout of mdistiller's cifar_teachers.tar, and the dry run of
tools/reproduce_cifar100.sh."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import _cifar_zoo_utils as zoo
import pytest
import torch

from _support import REPO
from _work_dirs import val_records, write_start

PREPARE = REPO / 'tools' / 'model_converters' / 'prepare_cifar100_teachers.sh'
# name in the archive -> model config (and output file name)
TEACHERS = {
    'resnet56': 'resnet56',
    'resnet110': 'resnet110',
    'resnet32x4': 'resnet32x4',
    'wrn_40_2': 'wrn_40_2',
    'vgg13': 'vgg13',
    'ResNet50': 'resnet50',
}
# The zoo's final layer, per family, and its name in mmpretrain.
CLASSIFIER = {'resnet50': 'linear', 'vgg13': 'classifier'}


def member(name: str) -> str:
    return f'cifar_teachers/{name}_vanilla/ckpt_epoch_240.pth'


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    """The six teachers at random weights, as the release stores them
    (float32 ``{'model', 'epoch', 'accuracy', 'optimizer'}`` files)."""
    root = tmp_path_factory.mktemp('release')
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    state_dicts = {}
    for seed, (name, model) in enumerate(TEACHERS.items()):
        net = zoo.reference_run(model, x, seed=seed)
        state_dict = {k: v.float() if v.is_floating_point() else v
                      for k, v in net.state_dict.items()}
        path = root / member(name)
        path.parent.mkdir(parents=True)
        torch.save(zoo.released_checkpoint(state_dict), path)
        state_dicts[model] = state_dict
    return root, state_dicts


def make_tar(root: Path, path: Path, names) -> Path:
    with tarfile.open(path, 'w') as tar:
        for name in names:
            tar.add(root / member(name), arcname=member(name))
    return path


def fingerprint(state_dict: dict) -> list:
    return sorted((tuple(v.shape), float(v.double().sum()))
                  for v in state_dict.values())


def prepare(*args):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(['bash', str(PREPARE), *map(str, args)],
                          capture_output=True, text=True, env=env,
                          cwd=REPO)


@pytest.mark.slow
def test_teachers_convert_load_strictly_and_are_kept(released, tmp_path):
    root, state_dicts = released
    archive = make_tar(root, tmp_path / 'cifar_teachers.tar', TEACHERS)
    out = tmp_path / 'checkpoints'
    done = prepare(archive, '--out-dir', out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f'{m}.pth' for m in TEACHERS.values())
    for model, source in state_dicts.items():
        assert f'{out}/{model}.pth loads strictly' in done.stdout
        converted = torch.load(out / f'{model}.pth')['state_dict']
        classifier = CLASSIFIER.get(model, 'fc')
        torch.testing.assert_close(converted['head.fc.weight'],
                                   source[f'{classifier}.weight'],
                                   rtol=0, atol=0)
        # Every released tensor, and nothing else, under some name.
        assert fingerprint(converted) == fingerprint(source)

    # Again: nothing converted, nothing overwritten, the archive unread.
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    again = prepare(tmp_path / 'no_such.tar', '--out-dir', out)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count('exists, kept (--force') == 6
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_missing_teacher_is_named_and_nothing_is_written(released, tmp_path):
    root, _ = released
    without_vgg13 = [name for name in TEACHERS if name != 'vgg13']
    archive = make_tar(root, tmp_path / 'partial.tar', without_vgg13)
    out = tmp_path / 'checkpoints'
    out.mkdir()
    (out / 'resnet56.pth').write_bytes(b'kept')
    done = prepare(archive, '--out-dir', out, '--force')
    assert done.returncode != 0
    assert f'{archive} has no {member("vgg13")}' in done.stderr
    assert [p.name for p in out.iterdir()] == ['resnet56.pth']
    assert (out / 'resnet56.pth').read_bytes() == b'kept'


REPRODUCE = REPO / 'tools' / 'reproduce_cifar100.sh'


def reproduce(*args, work_dirs):
    env = dict(os.environ, WORK_DIRS=str(work_dirs), PYTHON=sys.executable)
    return subprocess.run(['bash', str(REPRODUCE), *args],
                          capture_output=True, text=True, env=env)


def write_reproduction_run(work_dir: Path, last_epoch: int,
                           checkpoint: bool = True) -> None:
    """A 240-epoch CIFAR-100 run that validated epochs 1..``last_epoch``
    and, with ``checkpoint``, saved the checkpoint of its last epoch
    (``epoch_240.pth`` at the end: a run killed during its final
    validation has it too)."""
    work_dir.mkdir(parents=True)
    (work_dir / f'{work_dir.parent.name}.py').write_text('# dumped\n')
    write_start(work_dir, '20261201_100000', int(work_dir.name[4:]),
                val_records([50.0] * last_epoch), max_epochs=240)
    if checkpoint:
        (work_dir / f'epoch_{last_epoch}.pth').write_bytes(b'')
        (work_dir / 'last_checkpoint').write_text(
            str(work_dir / f'epoch_{last_epoch}.pth'))


def test_reproduction_dry_run_deals_runs_and_skips_finished(tmp_path):
    work = tmp_path / 'work_dirs'
    loca = 'loca_logits_resnet56_resnet20_1xb64_cifar100'
    dkdloca = 'dkdloca_logits_vgg13_vgg8_1xb64_cifar100'
    write_reproduction_run(work / loca / 'seed1', 240)
    write_reproduction_run(work / dkdloca / 'seed0', 9)

    done = reproduce('2', 'resnet56_resnet20,vgg13_vgg8', 'loca,dkdloca',
                     '0,1', '--dry-run', work_dirs=work)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f'# finished, skipped: {work}/{loca}/seed1'
    commands, collect = lines[1:-1], lines[-1]
    # 2 pairs x 2 methods x 2 seeds, one finished; dealt to GPU 0, 1, 0...
    assert len(commands) == 7
    runs = [(config, seed) for method in ('loca', 'dkdloca')
            for config in (f'{method}_logits_resnet56_resnet20',
                           f'{method}_logits_vgg13_vgg8')
            for seed in (0, 1)]
    runs.remove(('loca_logits_resnet56_resnet20', 1))
    expected = []
    for i, (config, seed) in enumerate(runs):
        name = f'{config}_1xb64_cifar100'
        resume = ' --resume' if name == dkdloca and seed == 0 else ''
        expected.append(
            (i % 2, f'CUDA_VISIBLE_DEVICES={i % 2} PORT={29500 + i % 2} '
             f'bash tools/dist_train.sh configs/distill/cifar100/{name}.py 1 '
             f'--work-dir {work}/{name}/seed{seed} --cfg-options '
             f'randomness.seed={seed}{resume} > {work}/{name}/seed{seed}.out '
             '2>&1'))
    # GPU 0's queue is printed first, then GPU 1's.
    assert commands == [c for _, c in sorted(expected, key=lambda e: e[0])]
    assert collect.startswith(
        f'{sys.executable} tools/analysis_tools/collect_results.py')
    assert len(collect.split()[2:]) == 8  # every chosen run, finished too
    assert not any(work.glob('*/*.out'))  # a dry run starts nothing


def test_a_run_killed_in_its_final_validation_is_not_finished(tmp_path):
    work = tmp_path / 'work_dirs'
    loca = 'loca_logits_resnet56_resnet20_1xb64_cifar100'
    # The last checkpoint is written before the validation of its epoch:
    # killed then, the run has epoch_240.pth but validated to epoch 239.
    killed = work / loca / 'seed0'
    write_reproduction_run(killed, 239)
    (killed / 'last_checkpoint').write_text(str(killed / 'epoch_240.pth'))
    (killed / 'epoch_240.pth').write_bytes(b'')
    # Validated and recorded, its checkpoints cleaned up: finished.
    write_reproduction_run(work / loca / 'seed1', 240, checkpoint=False)
    done = reproduce('1', 'resnet56_resnet20', 'loca', '0,1', '--dry-run',
                     work_dirs=work)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # Resuming from the final checkpoint would train and validate nothing:
    # it trains again, from the start.
    assert lines[:3] == [
        '# final checkpoint without its validation recorded, trained again '
        f'from the start: {killed}',
        f'# finished, skipped: {work}/{loca}/seed1',
        f'CUDA_VISIBLE_DEVICES=0 PORT=29500 bash tools/dist_train.sh '
        f'configs/distill/cifar100/{loca}.py 1 --work-dir {killed} '
        f'--cfg-options randomness.seed=0 > {killed}.out 2>&1',
    ]


@pytest.mark.parametrize('args, message', [
    (['1', 'vgg13_vgg8', 'kd', '0,1,0'],
     "seed '0' given twice in '0,1,0': its runs would share a work dir"),
    (['2', 'vgg13_vgg8', 'kd', '0,00'],
     "seed '0' given twice in '0,0'"),
    (['2', 'vgg13_vgg8,vgg13_vgg8'], "pair 'vgg13_vgg8' given twice"),
    (['2', 'all', 'kd,loca,kd'], "method 'kd' given twice"),
])
def test_reproduction_refuses_repeated_runs(args, message, tmp_path):
    done = reproduce(*args, '--dry-run', work_dirs=tmp_path)
    assert done.returncode == 2 and message in done.stderr
    assert done.stdout == ''


@pytest.mark.parametrize('args, message', [
    (['0'], "GPUS must be a positive number, got '0'"),
    (['1', 'resnet56_resnet20', 'fitnet'], "unknown method 'fitnet'"),
    (['1', 'resnet18_resnet8'], "no single config for method 'kd' and pair "
     "'resnet18_resnet8'"),
    (['1', 'all', 'kd', '0,x'], "a seed is a number, got 'x'"),
])
def test_reproduction_refuses_bad_arguments(args, message, tmp_path):
    done = reproduce(*args, '--dry-run', work_dirs=tmp_path)
    assert done.returncode == 2 and message in done.stderr
