"""tools/train.py, test.py, dist_train.sh and the student converter, run as a
user runs them: a tiny LoCa distillation on data in ImageNet's layout, with
two CPU processes (gloo) against one process on the same global batch."""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner, load_checkpoint

import loca_mm  # noqa: F401
from loca_mm.utils.checkpoint import (CheckpointMismatchError,
                                      DamagedCheckpointError)
from _imagenet_utils import lenet, write_imagenet_layout
from _instrumentation import WRITE_LOG_DIR
from _support import (REPO, TOOLS, command_line_options, dataloader_options,
                      load_tool, logged_scalars, quiet_runner_reports)
from mmpretrain.registry import MODELS as CLS_MODELS

EPOCHS = 3
ITERS_PER_EPOCH = 2  # 16 images, global batch 8
GLOBAL_BATCH = 8

TINY_CONFIG = """
_base_ = ['{repo}/configs/_base_/distill/loca_in1k.py']
custom_imports = dict(
    imports=['loca_mm', '_instrumentation'], allow_failed_imports=False)
_classifier = {classifier!r}
model = dict(
    architecture=_classifier, teacher=_classifier,
    teacher_ckpt='{teacher_ckpt}')
data_preprocessor = dict(num_classes=4, mean=[128.0], std=[64.0],
                         to_rgb=False)
_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='PackInputs'),
]
# Fixed order: rank r of w takes samples r, r + w, ...; one process
# takes them all, so each step sees the same global batch.
train_dataloader = dict(
    dataset=dict(pipeline=_pipeline), sampler=dict(shuffle=False))
val_dataloader = dict(dataset=dict(pipeline=_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(topk=(1, ))
test_evaluator = val_evaluator
# The ImageNet bases scale lr to the actual batch; this run keeps the
# recipe's lr at its tiny batch so that it learns in 3 epochs.
auto_scale_lr = dict(enable=False)
optim_wrapper = dict(optimizer=dict(lr=0.05))
train_cfg = dict(max_epochs={epochs})
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=1, max_keep_ckpts=-1))
custom_hooks = [dict(type='InterruptAtEpochHook', epoch=None)]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def tool_env(**extra) -> dict:
    env = dict(os.environ)
    env['PATH'] = f'{Path(sys.executable).parent}:{env["PATH"]}'
    # The training processes import the test instrumentation.
    env['PYTHONPATH'] = f'{REPO / "tests"}:{env.get("PYTHONPATH", "")}'
    env['OMP_NUM_THREADS'] = '1'
    env.update(extra)
    return env


def run_tool(args, env, expect_ok=True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300)
    if expect_ok and done.returncode != 0:
        raise AssertionError(f'{args} failed:\n{done.stdout[-3000:]}\n'
                             f'{done.stderr[-5000:]}')
    return done


def scalars(work_dir: Path) -> list:
    """The scalar log lines of every run in ``work_dir``, oldest first."""
    return sum(logged_scalars(work_dir), [])


def last_top1(work_dir: Path) -> float:
    return [s for s in scalars(work_dir) if 'accuracy/top1' in s][-1][
        'accuracy/top1']


def student_weights(path: Path) -> dict:
    state = torch.load(path, map_location='cpu')['state_dict']
    return {k: v for k, v in state.items() if k.startswith('architecture.')}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """One process, two processes interrupted after epoch 2 and resumed
    (tools/dist_train.sh), then tools/test.py on the last checkpoint and the
    converter. The single process, test.py and the converter run in this
    process: starting the stack costs seconds per interpreter."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        quiet_runner_reports(monkeypatch)
        return run_all(tmp_path_factory.mktemp('entrypoints'), monkeypatch)


def run_all(root: Path, monkeypatch) -> dict:
    data = root / 'data'
    write_imagenet_layout(
        str(data), 4, train_per_class=4, val_per_class=2, grey=True)
    teacher = CLS_MODELS.build(lenet())
    teacher_ckpt = root / 'teacher.pth'
    torch.save({'state_dict': teacher.state_dict()}, teacher_ckpt)

    two_config = root / 'tiny_loca.py'
    two_config.write_text(
        TINY_CONFIG.format(
            repo=REPO,
            classifier=lenet(),
            teacher_ckpt=teacher_ckpt,
            epochs=EPOCHS))
    # Every process takes batches of 4 images.
    data_options = dataloader_options(
        data, batch_size=GLOBAL_BATCH // 2, in_process=True)

    # One process, global batch 8.
    one_cfg = Config.fromfile(str(two_config))
    one_cfg.merge_from_dict(data_options)
    one_cfg.train_dataloader.batch_size = GLOBAL_BATCH
    one_cfg.work_dir = str(root / 'one')
    Runner.from_cfg(one_cfg).train()

    # Two processes of 4 images; stopped before epoch 3 (0-based 2).
    data_options = command_line_options(data_options)
    two_dir = root / 'two'
    two_dir.mkdir()
    env = tool_env(**{WRITE_LOG_DIR: str(two_dir), 'PORT': str(free_port())})
    dist_train = ['bash', str(TOOLS / 'dist_train.sh'), str(two_config), '2',
                  '--work-dir', str(two_dir), '--cfg-options'] + data_options
    interrupted = run_tool(
        dist_train + ['custom_hooks.0.epoch=2'], env, expect_ok=False)
    checkpoints_after_interruption = sorted(
        p.name for p in two_dir.glob('epoch_*.pth'))
    env['PORT'] = str(free_port())
    run_tool(dist_train + ['--resume'], env)

    last = two_dir / f'epoch_{EPOCHS}.pth'
    dist_metrics_file = root / 'dist_test_metrics.json'
    env['PORT'] = str(free_port())
    run_tool([
        'bash',
        str(TOOLS / 'dist_test.sh'),
        str(two_config),
        str(last), '2', '--work-dir',
        str(root / 'dist_test'), '--out',
        str(dist_metrics_file), '--cfg-options'
    ] + data_options, env)

    metrics_file = root / 'test_metrics.json'
    monkeypatch.setattr(sys, 'argv', [
        'test.py',
        str(two_config),
        str(last), '--work-dir',
        str(root / 'test'), '--out',
        str(metrics_file), '--cfg-options'
    ] + data_options)
    load_tool('test.py').main()

    student_ckpt = root / 'student.pth'
    monkeypatch.setattr(sys, 'argv',
                        ['convert', str(last), str(student_ckpt)])
    load_tool('model_converters/convert_kd_ckpt_to_student.py').main()
    return dict(
        root=root,
        data=data,
        one_dir=root / 'one',
        two_dir=two_dir,
        two_config=two_config,
        interrupted=interrupted,
        checkpoints_after_interruption=checkpoints_after_interruption,
        test_metrics=json.loads(metrics_file.read_text()),
        dist_test_metrics=json.loads(dist_metrics_file.read_text()),
        student_ckpt=student_ckpt)


@pytest.mark.slow
def test_two_processes_train_like_one_on_the_same_global_batch(runs):
    # DDP averages the two processes' gradients, so each SGD step equals
    # one process's step on the 8 images together: the same weights after
    # every epoch (the teacher, frozen, is the checkpoint in both).
    for epoch in range(1, EPOCHS + 1):
        one = student_weights(runs['one_dir'] / f'epoch_{epoch}.pth')
        two = student_weights(runs['two_dir'] / f'epoch_{epoch}.pth')
        assert one.keys() == two.keys() and len(one) == 8  # LeNet5 + fc
        for key in one:
            torch.testing.assert_close(
                two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    # ... and they moved: a run that trained nothing would also agree.
    first = student_weights(runs['one_dir'] / 'epoch_1.pth')
    last = student_weights(runs['one_dir'] / f'epoch_{EPOCHS}.pth')
    key = 'architecture.head.fc.weight'
    assert (last[key] - first[key]).abs().max() > 1e-3
    # The same validation top-1 after every epoch.
    one_top1 = [s['accuracy/top1'] for s in scalars(runs['one_dir'])
                if 'accuracy/top1' in s]
    two_top1 = [s['accuracy/top1'] for s in scalars(runs['two_dir'])
                if 'accuracy/top1' in s]
    assert len(one_top1) == EPOCHS and two_top1 == one_top1


def test_two_processes_use_gloo_and_run_to_the_end(runs):
    log = '\n'.join(p.read_text() for p in runs['two_dir'].glob('*/*.log'))
    assert "backend='gloo'" in log and 'device_ids=None' in log
    assert 'Distributed training is not used' not in log
    # world size 2: each process trains 2 iterations of 4 images per epoch.
    iters = [s['iter'] for s in scalars(runs['two_dir']) if 'loss' in s]
    assert iters == list(range(1, EPOCHS * ITERS_PER_EPOCH + 1))


def test_only_rank_zero_writes_checkpoints(runs):
    written = (runs['two_dir'] / 'writes_rank0.txt').read_text().split()
    # mmengine writes an epoch's checkpoint again after a new best score
    # (so that it holds the score); every epoch is written, on rank 0 only.
    assert sorted({name for name in written if name.startswith('epoch_')}) \
        == [f'epoch_{epoch}.pth' for epoch in range(1, EPOCHS + 1)]
    assert not (runs['two_dir'] / 'writes_rank1.txt').exists()


def test_resume_continues_the_interrupted_run(runs):
    interrupted = runs['interrupted']
    assert interrupted.returncode != 0
    assert 'simulated interruption at epoch 2' in interrupted.stderr + \
        interrupted.stdout
    assert runs['checkpoints_after_interruption'] == [
        'epoch_1.pth', 'epoch_2.pth'
    ]
    last = torch.load(runs['two_dir'] / f'epoch_{EPOCHS}.pth')
    assert last['meta']['epoch'] == EPOCHS
    assert last['meta']['iter'] == EPOCHS * ITERS_PER_EPOCH
    # The resumed run trained only epoch 3 (its log starts at iteration 5)
    # and ends where an uninterrupted run ends (the test above).
    _, resumed = logged_scalars(runs['two_dir'])
    assert [s['iter'] for s in resumed if 'loss' in s] == [5, 6]


def test_test_py_reports_the_last_validation_top1(runs):
    top1 = runs['test_metrics']['accuracy/top1']
    assert top1 == pytest.approx(last_top1(runs['two_dir']))
    # Two processes (dist_test.sh) evaluate half of the images each and
    # report the top-1 of all of them.
    assert runs['dist_test_metrics']['accuracy/top1'] == pytest.approx(top1)
    # The run learned the brightness of each class: far above chance (25).
    assert top1 >= 50.0


def test_test_py_scores_a_student_checkpoint_with_the_distillation_config(
        runs, monkeypatch):
    # The converted student with the distillation config: its keys lack
    # the architecture. prefix; it loads into the student, which scores as
    # in the distillation checkpoint it came from.
    quiet_runner_reports(monkeypatch)
    work_dir = runs['root'] / 'student_with_kd_config'
    metrics_file = work_dir / 'metrics.json'
    test_args = [
        'test.py',
        str(runs['two_config']), '--work-dir',
        str(work_dir), '--out',
        str(metrics_file), '--cfg-options',
        # A logger of its own (mmengine names it after the experiment).
        'experiment_name=student_with_kd_config'
    ] + command_line_options(
        dataloader_options(runs['data'], batch_size=4, in_process=True))
    monkeypatch.setattr(sys, 'argv',
                        test_args[:2] + [str(runs['student_ckpt'])] +
                        test_args[2:])
    load_tool('test.py').main()
    assert json.loads(metrics_file.read_text())['accuracy/top1'] == \
        pytest.approx(runs['test_metrics']['accuracy/top1'])
    log, = work_dir.glob('*/*.log')
    assert 'loaded into the student' in log.read_text()

    # A file that fits neither the distillation model nor its student.
    other = runs['root'] / 'other.pth'
    torch.save({'state_dict': {'fc.weight': torch.zeros(4, 120)}}, other)
    monkeypatch.setattr(sys, 'argv',
                        test_args[:2] + [str(other)] + test_args[2:])
    with pytest.raises(CheckpointMismatchError) as error:
        load_tool('test.py').main()
    message = str(error.value)
    assert 'does not fit the student' in message
    assert 'backbone.features.0.weight' in message  # missing, named


def test_converted_student_loads_strictly_and_scores_the_same(
        runs, monkeypatch):
    quiet_runner_reports(monkeypatch)
    student_ckpt = runs['student_ckpt']
    # A plain mmpretrain classifier, loaded strictly (no loca_mm involved).
    cfg = Config.fromfile(runs['two_config'])
    student_cfg = cfg.copy()
    student_cfg.model = cfg.model.architecture
    student_cfg.model.data_preprocessor = cfg.data_preprocessor
    student_cfg.merge_from_dict(
        dataloader_options(runs['data'], batch_size=4, in_process=True))
    student_cfg.work_dir = str(runs['root'] / 'student_test')
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'custom_hooks'):
        student_cfg.pop(key)
    runner = Runner.from_cfg(student_cfg)
    load_checkpoint(runner.model, str(student_ckpt), strict=True)
    distilled = student_weights(runs['two_dir'] / f'epoch_{EPOCHS}.pth')
    for key, value in runner.model.state_dict().items():
        torch.testing.assert_close(value, distilled['architecture.' + key])
    assert runner.test()['accuracy/top1'] == pytest.approx(
        runs['test_metrics']['accuracy/top1'])


def test_test_py_names_a_damaged_checkpoint(runs, monkeypatch):
    quiet_runner_reports(monkeypatch)
    damaged = runs['root'] / 'damaged' / f'epoch_{EPOCHS}.pth'
    damaged.parent.mkdir()
    intact = (runs['two_dir'] / f'epoch_{EPOCHS}.pth').read_bytes()
    damaged.write_bytes(intact[:len(intact) // 3])
    monkeypatch.setattr(sys, 'argv', [
        'test.py',
        str(runs['two_config']),
        str(damaged), '--work-dir',
        str(runs['root'] / 'damaged_test'), '--cfg-options'
    ] + command_line_options(
        dataloader_options(runs['data'], batch_size=4, in_process=True)))
    with pytest.raises(DamagedCheckpointError,
                       match=f'{damaged}.*damaged or not a checkpoint'):
        load_tool('test.py').main()


def test_converter_refuses_a_checkpoint_without_a_student(tmp_path):
    converter = load_tool('model_converters/convert_kd_ckpt_to_student.py')
    plain = tmp_path / 'plain.pth'
    torch.save({'state_dict': {'backbone.conv.weight': torch.ones(1)}}, plain)
    with pytest.raises(CheckpointMismatchError,
                       match='not a distillation checkpoint'):
        converter.convert(str(plain), str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


def test_student_converter_never_overwrites_unasked(tmp_path, monkeypatch):
    converter = load_tool('model_converters/convert_kd_ckpt_to_student.py')
    src, dst = tmp_path / 'epoch_240.pth', tmp_path / 'student.pth'
    torch.save({'state_dict': {'architecture.fc.weight': torch.ones(2),
                               'teacher.fc.weight': torch.zeros(2)}}, src)
    dst.write_bytes(b'an earlier student')
    monkeypatch.setattr(sys, 'argv', ['convert', str(src), str(dst)])
    with pytest.raises(FileExistsError, match='--force'):
        converter.main()
    assert dst.read_bytes() == b'an earlier student'
    monkeypatch.setattr(sys, 'argv',
                        ['convert', str(src), str(dst), '--force'])
    converter.main()
    assert torch.equal(
        torch.load(dst)['state_dict']['fc.weight'], torch.ones(2))
    released = src.read_bytes()
    with pytest.raises(FileExistsError, match='is the input'):
        converter.convert(str(src), str(src), force=True)
    assert src.read_bytes() == released
    # A damaged input is named.
    src.write_bytes(released[:200])
    with pytest.raises(DamagedCheckpointError,
                       match=f'{src}.*damaged or not a checkpoint'):
        converter.convert(str(src), str(tmp_path / 'other.pth'))


def test_readme_config_example_names_the_loss_as_the_configs_do():
    # `--cfg-options model.distiller.distill_losses.<name>.alpha=...` only
    # works with the name the ready configs use.
    readme = (REPO / 'README.md').read_text()
    example = readme.split('## Use it in a config', 1)[1].split('```')[1]
    names = set(re.findall(r'(?:distill_losses|loss_forward_mappings)='
                           r'dict\((\w+)=', example))
    cfg = Config.fromfile(
        str(REPO / 'configs/distill/cifar100/'
            'loca_logits_resnet56_resnet20_1xb64_cifar100.py'))
    distiller = cfg.model.distiller
    assert names and names <= set(distiller.distill_losses)
    assert names <= set(distiller.loss_forward_mappings)
    assert 'loss_kd' not in readme


def test_launch_exports_every_public_function():
    from loca_mm.utils import launch
    public = {
        name for name, value in vars(launch).items()
        if callable(value) and getattr(value, '__module__', None) ==
        launch.__name__ and not name.startswith('_')
    }
    assert public <= set(launch.__all__)
    assert all(hasattr(launch, name) for name in launch.__all__)


@pytest.fixture(scope='module')
def train_tool():
    return load_tool('train.py')


def parsed(tool, monkeypatch, *argv):
    monkeypatch.setattr(sys, 'argv', ['train.py', *argv])
    # setenv first, so that teardown restores LOCAL_RANK's absence even
    # after parse_args() exported it (it would turn later tests distributed).
    monkeypatch.setenv('LOCAL_RANK', '')
    monkeypatch.delenv('LOCAL_RANK')
    return tool.parse_args()


@pytest.mark.parametrize('flag', ['--local-rank', '--local_rank'])
def test_both_local_rank_spellings_reach_local_rank(flag, train_tool,
                                                   monkeypatch):
    args = parsed(train_tool, monkeypatch, 'cfg.py', f'{flag}=3')
    assert args.local_rank == 3 and os.environ['LOCAL_RANK'] == '3'


def test_command_line_reaches_the_config(train_tool, monkeypatch):
    cfg = Config(
        dict(
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
            auto_scale_lr=dict(base_batch_size=256)))
    args = parsed(train_tool, monkeypatch, 'configs/x/my_exp.py', '--amp',
                  '--auto-scale-lr', '--resume', '--cfg-options',
                  'optim_wrapper.optimizer.lr=0.2')
    cfg = train_tool.merge_args(cfg, args)
    assert cfg.work_dir == './work_dirs/my_exp'
    if torch.cuda.is_available():
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.loss_scale == 'dynamic'
    else:  # CPU bfloat16 autocast, no loss scale
        assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16'
        assert 'loss_scale' not in cfg.optim_wrapper
    assert cfg.auto_scale_lr.enable is True
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.optim_wrapper.optimizer.lr == 0.2
    assert cfg.launcher == 'none' and 'model_wrapper_cfg' not in cfg

    args = parsed(train_tool, monkeypatch, 'my_exp.py', '--resume',
                  'ckpt.pth', '--work-dir', 'out')
    cfg = train_tool.merge_args(Config(dict()), args)
    assert (cfg.resume, cfg.load_from, cfg.work_dir) == (True, 'ckpt.pth',
                                                         'out')

    args = parsed(train_tool, monkeypatch, 'my_exp.py', '--auto-scale-lr')
    with pytest.raises(ValueError, match='base_batch_size'):
        train_tool.merge_args(Config(dict()), args)


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU set-up')
def test_distributed_cpu_run_gets_gloo_and_no_device_ids():
    from loca_mm.utils import prepare_distributed_env
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    prepare_distributed_env(cfg, 'pytorch')
    assert cfg.launcher == 'pytorch'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert cfg.model_wrapper_cfg.device_ids is None
    with pytest.raises(ValueError, match='launcher'):
        prepare_distributed_env(cfg, 'torchrun')


@pytest.fixture
def stub_launchers(tmp_path):
    """``python`` and ``srun`` that print their arguments instead of
    starting anything, first on PATH."""
    for name in ('python', 'srun'):
        stub = tmp_path / name
        stub.write_text('#!/bin/sh\necho "$0 $@"\n')
        stub.chmod(0o755)
    env = dict(os.environ)
    env['PATH'] = f'{tmp_path}:{env["PATH"]}'
    return env


def launched(script: str, args, env: dict) -> str:
    done = subprocess.run(['bash', str(TOOLS / script), *args],
                          env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout


def test_dist_scripts_pass_the_node_layout_to_torchrun(stub_launchers):
    env = dict(stub_launchers, NNODES='2', NODE_RANK='1',
               MASTER_ADDR='10.1.2.3', PORT='29999')
    train = launched('dist_train.sh', ['cfg.py', '8', '--amp'], env)
    assert '-m torch.distributed.run --nnodes=2 --node_rank=1 ' \
        '--master_addr=10.1.2.3 --nproc_per_node=8 --master_port=29999 ' \
        f'{TOOLS}/train.py cfg.py --launcher pytorch --amp' in train
    test = launched('dist_test.sh', ['cfg.py', 'ckpt.pth', '4', '--out',
                                     'm.json'], env)
    assert '--nnodes=2 --node_rank=1 --master_addr=10.1.2.3 ' \
        '--nproc_per_node=4 --master_port=29999 ' \
        f'{TOOLS}/test.py cfg.py ckpt.pth --launcher pytorch --out m.json' \
        in test
    # One node by default.
    single = launched('dist_train.sh', ['cfg.py', '2'], stub_launchers)
    assert '--nnodes=1 --node_rank=0 --master_addr=127.0.0.1 ' \
        '--nproc_per_node=2 --master_port=29500' in single


def test_slurm_scripts_start_one_task_per_gpu(stub_launchers):
    env = dict(stub_launchers, GPUS='16', GPUS_PER_NODE='8')
    train = launched('slurm_train.sh', ['part', 'job', 'cfg.py', 'out',
                                        '--amp'], env)
    assert '-p part --job-name=job --gres=gpu:8 --ntasks=16 ' \
        '--ntasks-per-node=8 --cpus-per-task=5 --kill-on-bad-exit=1' in train
    assert f'{TOOLS}/train.py cfg.py --work-dir=out --launcher=slurm ' \
        '--amp' in train
    test = launched('slurm_test.sh', ['part', 'job', 'cfg.py', 'ckpt.pth'],
                    env)
    assert f'{TOOLS}/test.py cfg.py ckpt.pth --launcher=slurm' in test
