"""When does LoCa help? Students distilled on Fashion-MNIST from teachers of
different quality, with and without LoCa, over paired seeds.

Per teacher the study trains the teacher once, measures its mis-instruction
rate on the students' augmented training data
(:mod:`loca_mm.analysis.misinstruction`) and distils the student with
each method and seed; the student alone is trained once per seed. Every
training is the project's config built into an mmengine Runner by
:func:`loca_mm.utils.build_runner`, as ``tools/train.py`` does, run in a pool
of worker processes that import the stack once (one training at a time: in
the calling process). After training, the network is evaluated on the
10,000 test images: top-1, expected calibration error (15 bins) and negative
log-likelihood.

A seed fixes everything that differs between the runs of one method: the
student's initial weights (saved once per seed and loaded by every method,
so runs are paired), the batch order and the augmentation.

:func:`run` runs a study and returns its summary; :func:`write_report`
writes ``results.json``, ``results.md`` and the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import statistics
import time
from concurrent.futures import (FIRST_COMPLETED, Executor, Future,
                                ProcessPoolExecutor, wait)
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .metrics import (MIN_BOOTSTRAP_SEEDS, MIN_FIT_POINTS, bootstrap_crossover,
                      classification_metrics, linear_fit)
from .worker import start_worker

REPO = Path(__file__).resolve().parents[2]
VANILLA = 'configs/vanilla/fashion_mnist/'
DISTILL = 'configs/distill/fashion_mnist/'
PAIR = 'logits_convnet32x64_convnet16x32_1xb128_fashion_mnist.py'
STUDENT_CONFIG = VANILLA + 'convnet16x32_1xb128_fashion_mnist.py'
TEACHER_CONFIG = VANILLA + 'convnet32x64_1xb128_fashion_mnist.py'
LOSS = 'model.distiller.distill_losses.loss_distill.'

# The per-run budget of the students, to fit the study on a shared 2-core
# machine: the first 2,000 training images (the configs have 10,000), the
# configs' 3 epochs.
STUDENT_IMAGES = 2000
# The larger teacher network (configs/_base_/models/fashion_mnist/
# convnet64x128.py): overrides of a classifier config's model for training
# it, and the model file a distillation config's ``model.teacher`` refers to.
LARGE_TEACHER = ('model.backbone.stage_channels=(64,128)',
                 'model.head.in_channels=6272')
LARGE_NETWORK = (
    'cfg_path=loca_mm::_base_/models/fashion_mnist/convnet64x128.py', )


@dataclass(frozen=True)
class Method:
    """A way to train the student: a config and overrides of it."""
    label: str
    config: str
    options: Sequence[str] = ()


@dataclass(frozen=True)
class Teacher:
    """A teacher: its training config and overrides, its network's
    overrides (for the distillation configs' ``model.teacher``), and how it
    was trained, in words."""
    label: str
    config: str = TEACHER_CONFIG
    options: Sequence[str] = ()
    network: Sequence[str] = ()


def _epochs(n: int) -> tuple:
    return (f'train_cfg.max_epochs={n}', f'train_cfg.val_interval={n}',
            f'param_scheduler.T_max={n}')


METHODS: Dict[str, Method] = {
    'student':
    Method('student alone', STUDENT_CONFIG),
    'kd':
    Method('KD', DISTILL + 'kd_' + PAIR),
    'loca':
    Method('LoCa (wrong, alpha 0.9)', DISTILL + 'loca_' + PAIR),
    'loca-wrong-0.7':
    Method('LoCa (wrong, alpha 0.7)', DISTILL + 'loca_' + PAIR,
           (LOSS + 'alpha=0.7', )),
    'loca-margin-0.9':
    Method('LoCa (margin, alpha 0.9)', DISTILL + 'loca_' + PAIR,
           (LOSS + 'calibrate=margin', )),
    'loca-margin-0.7':
    Method('LoCa (margin, alpha 0.7)', DISTILL + 'loca_' + PAIR,
           (LOSS + 'calibrate=margin', LOSS + 'alpha=0.7')),
    'dkd':
    Method('DKD (beta 2)', DISTILL + 'dkd_' + PAIR),
    'dkd-beta8':
    Method('DKD (beta 8)', DISTILL + 'dkd_' + PAIR,
           (LOSS + 'nckd_weight=8.0', )),
    'dkdloca':
    Method('DKD+LoCa (wrong, alpha 0.9)', DISTILL + 'dkdloca_' + PAIR),
    'dist':
    Method('DIST', DISTILL + 'dist_' + PAIR),
    'distloca':
    Method('DIST+LoCa (wrong, alpha 0.9)', DISTILL + 'distloca_' + PAIR),
    # Logit Standardization (Sun et al., CVPR 2024) with its repository's
    # KD weight 9 and base temperature 2, alone and under LoCa.
    'kdls':
    Method('KD+LS', DISTILL + 'kdls_' + PAIR),
    'locals':
    Method('LoCa+LS (wrong, alpha 0.9)', DISTILL + 'locals_' + PAIR),
    'dkdls':
    Method('DKD+LS', DISTILL + 'dkdls_' + PAIR),
    'dkdlocals':
    Method('DKD+LoCa+LS (wrong, alpha 0.9)', DISTILL + 'dkdlocals_' + PAIR),
    # LS with KD's own settings here (tau 4, 0.1 x CE + 0.9 x KD): whether
    # LS's CIFAR-100 settings or the standardization decide its result.
    'kd-standardized':
    Method('KD+LS (KD\'s tau 4 and weights)', DISTILL + 'kd_' + PAIR,
           (LOSS + 'standardize=True', )),
    'loca-standardized':
    Method('LoCa+LS (KD\'s tau 4 and weights)', DISTILL + 'loca_' + PAIR,
           (LOSS + 'standardize=True', )),
}
# The same network (convnet32x64, or the larger one) trained for different
# lengths on different amounts of data, from the best teacher to the worst.
TEACHERS: Dict[str, Teacher] = {
    'memorized':
    Teacher('larger net, the students\' 2k images only, 60 epochs',
            options=('train_dataloader.dataset.indices=2000', *_epochs(60),
                     *LARGE_TEACHER),
            network=LARGE_NETWORK),
    'large':
    Teacher('larger net, 60k images, 1 epoch',
            options=(*_epochs(1), *LARGE_TEACHER),
            network=LARGE_NETWORK),
    'strong':
    Teacher('60k images, 2 epochs'),
    'good':
    Teacher('last 20k images, 1 epoch',
            options=('train_dataloader.dataset.indices=-20000', *_epochs(1))),
    'weak':
    Teacher('last 5k images, 1 epoch',
            VANILLA + 'convnet32x64_1xb128-5k-1e_fashion_mnist.py'),
    'last-1k':
    Teacher('last 1k images, 2 epochs',
            options=('train_dataloader.dataset.indices=-1000', *_epochs(2))),
    'last-1k-1e':
    Teacher('last 1k images, 1 epoch',
            options=('train_dataloader.dataset.indices=-1000', *_epochs(1))),
}
# The study's teachers by default ('strong', the earlier study's teacher A,
# costs as much as all the others together).
STUDY_TEACHERS = ('memorized', 'large', 'good', 'weak', 'last-1k',
                  'last-1k-1e')
# The study's methods by default: LoCa beside each loss it calibrates, and
# Logit Standardization (LS) alone and with LoCa.
STUDY_METHODS = ('student', 'kd', 'loca', 'loca-margin-0.7', 'dkd', 'dkdloca',
                 'dist', 'distloca', 'kdls', 'locals', 'dkdls', 'dkdlocals',
                 'kd-standardized', 'loca-standardized')
# The config whose data the mis-instruction rate is measured on: the
# students' training subset through the training pipeline.
MISINSTRUCTION_CONFIG = DISTILL + 'loca_' + PAIR
# The paired differences the study reports: (method, baseline).
COMPARISONS = (('loca', 'kd'), ('loca-margin-0.7', 'kd'), ('dkdloca', 'dkd'),
               ('distloca', 'dist'), ('kd', 'student'), ('kdls', 'kd'),
               ('locals', 'kdls'), ('locals', 'kd'), ('dkdls', 'dkd'),
               ('dkdlocals', 'dkdls'), ('kd-standardized', 'kd'),
               ('loca-standardized', 'kd-standardized'))
# The gains whose curve against the teacher is fitted, by what they
# measure (one row of the gain figure each).
GAIN_GROUPS = {
    'LoCa': (('loca', 'kd'), ('dkdloca', 'dkd'), ('distloca', 'dist')),
    'Logit Standardization (LS), alone and with LoCa':
    (('kdls', 'kd'), ('locals', 'kdls'), ('locals', 'kd'),
     ('dkdlocals', 'dkdls')),
}
GAINS = tuple(gain for group in GAIN_GROUPS.values() for gain in group)


@dataclass
class Task:
    """One unit of work: a training or the mis-instruction analysis."""
    name: str
    kind: str  # 'teacher', 'student', 'distill' or 'misinstruction'
    config: str
    work_dir: str
    options: List[str]
    deps: List[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def spec(self) -> dict:
        """What determines the result (compared by ``reuse``)."""
        return dict(kind=self.kind, config=self.config, options=self.options)


def teacher_checkpoint(work_root: str, teacher: str) -> str:
    return osp.join(work_root, f'teacher_{teacher}', 'teacher.pth')


def initial_student(work_root: str, seed: int) -> str:
    return osp.join(work_root, 'init', f'student_seed{seed}.pth')


def build_tasks(teachers: Sequence[str],
                methods: Sequence[str],
                seeds: Sequence[int],
                work_root: str,
                options: Sequence[str] = (),
                student_images: int = STUDENT_IMAGES) -> List[Task]:
    """The study's tasks, teachers first so that students can start.

    Args:
        teachers, methods: keys of :data:`TEACHERS` and :data:`METHODS`.
        seeds: the students' seeds.
        work_root (str): parent of the tasks' work directories.
        options: ``key=value`` overrides for every run, after the study's.
        student_images (int): the students train on the first this many
            training images, on which the mis-instruction is measured too.
    """
    if student_images < 1:
        raise ValueError(
            f'student_images must be >= 1, got {student_images!r}')
    student_data = f'train_dataloader.dataset.indices={student_images}'
    for name, known, what in ((teachers, TEACHERS, 'teacher'),
                              (methods, METHODS, 'method')):
        unknown = [n for n in name if n not in known]
        if unknown:
            raise ValueError(f'unknown {what}s {unknown}; known: '
                             f'{sorted(known)}')
    root = osp.abspath(work_root)
    tasks = []
    for name in teachers:
        teacher = TEACHERS[name]
        tasks.append(
            Task(f'teacher {name}', 'teacher', teacher.config,
                 osp.join(root, f'teacher_{name}'),
                 [*teacher.options, *options],
                 info=dict(teacher=name)))
    for name in teachers:
        tasks.append(
            Task(
                f'misinstruction {name}',
                'misinstruction',
                MISINSTRUCTION_CONFIG,
                osp.join(root, f'misinstruction_{name}'), [
                    student_data,
                    *(f'model.teacher.{o}' for o in TEACHERS[name].network),
                    *options
                ],
                deps=[f'teacher {name}'],
                info=dict(
                    teacher=name,
                    checkpoint=teacher_checkpoint(root, name))))
    for seed in seeds:
        init = initial_student(root, seed)
        for method_name in methods:
            method = METHODS[method_name]
            seeded = [f'randomness.seed={seed}', student_data,
                      *method.options]
            if method_name == 'student':
                tasks.append(
                    Task(f'student s{seed}', 'student', method.config,
                         osp.join(root, f'student_seed{seed}'), [
                             *seeded, 'model.init_cfg.type=Pretrained',
                             f'model.init_cfg.checkpoint={init}', *options
                         ],
                         info=dict(method=method_name, seed=seed)))
                continue
            for teacher in teachers:
                tasks.append(
                    Task(
                        f'{method_name} {teacher} s{seed}',
                        'distill',
                        method.config,
                        osp.join(root, f'{method_name}_{teacher}_seed{seed}'),
                        [
                            *seeded,
                            'model.teacher_ckpt=' +
                            teacher_checkpoint(root, teacher),
                            *(f'model.teacher.{o}'
                              for o in TEACHERS[teacher].network),
                            'model.architecture.init_cfg.type=Pretrained',
                            f'model.architecture.init_cfg.checkpoint={init}',
                            *options
                        ],
                        deps=[f'teacher {teacher}'],
                        info=dict(
                            method=method_name, seed=seed, teacher=teacher)))
    return tasks


def parse_options(options: Sequence[str]) -> dict:
    """``key=value`` strings as mmengine's ``--cfg-options`` reads them."""
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(prog='options')
    parser.add_argument('--options', nargs='+', action=DictAction)
    return parser.parse_args(['--options', *options]).options \
        if options else {}


def save_initial_student(seed: int,
                         path: str,
                         config: str = STUDENT_CONFIG) -> None:
    """Save the initial weights for ``seed`` of the student network of
    ``config`` (a classifier config, relative to the repository).

    Loading them into every method's student (``init_cfg`` Pretrained) pairs
    the runs of one seed: building a distillation model draws random numbers
    for the teacher as well, so the seed alone would give each method a
    different initial student.
    """
    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.runner import set_random_seed

    import loca_mm  # noqa: F401  (registers SmallConvNet)
    from mmpretrain.registry import MODELS

    # init_weights reports every parameter to the current logger at INFO.
    if not MMLogger.check_instance_created('initial_student'):
        MMLogger.get_instance('initial_student', log_level='WARNING')
    MMLogger.get_instance('initial_student')
    set_random_seed(seed)
    model = MODELS.build(Config.fromfile(str(REPO / config)).model)
    model.init_weights()
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': model.state_dict(), 'meta': {'seed': seed}},
               path)


def _evaluate(model, preprocessor, dataloader) -> dict:
    """Top-1, ECE and NLL of an mmpretrain classifier on a dataloader,
    its images prepared by ``preprocessor``."""
    import torch
    logits, labels = [], []
    model.eval()
    with torch.no_grad():
        for data_batch in dataloader:
            data = preprocessor(data_batch, False)
            logits.append(model(data['inputs'], mode='tensor'))
            labels.append(
                torch.cat([s.gt_label for s in data['data_samples']]))
    return classification_metrics(torch.cat(logits), torch.cat(labels))


def _loca_statistics(work_dir: str) -> dict:
    """Means over training of the logged ``loca_ratio``/``loca_scale``."""
    runs = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    if not runs:
        return {}
    from tools.analysis_tools.results import read_scalars
    scalars = read_scalars(runs[-1])
    result = {}
    for key in ('loca_ratio', 'loca_scale'):
        values = [e[key] for e in scalars if key in e]
        if values:
            result[f'{key}_mean'] = statistics.fmean(values)
    return result


def _train(task: Task) -> dict:
    """Train one network with the project's runner and evaluate it."""
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    from loca_mm.utils import build_runner
    cfg = Config.fromfile(str(REPO / task.config))
    cfg.merge_from_dict(parse_options(task.options))
    cfg.work_dir = task.work_dir
    # Unique per task: mmengine keys its logger and message hub by it.
    cfg.experiment_name = task.name.replace(' ', '_')
    # The study evaluates once, after training, with its own metrics.
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    runner = build_runner(cfg)
    runner.train()
    model = runner.model
    network = model.architecture if task.kind == 'distill' else model
    # A distillation model normalises the images before the student sees
    # them; the student's own preprocessor is the identity there.
    result = _evaluate(network, model.data_preprocessor,
                       Runner.build_dataloader(cfg.test_dataloader))
    if task.kind == 'teacher':
        torch.save({'state_dict': network.state_dict()},
                   osp.join(task.work_dir, 'teacher.pth'))
    if task.kind == 'distill':
        result.update(_loca_statistics(task.work_dir))
    return result


def _misinstruction(task: Task) -> dict:
    """The mis-instruction analysis of a teacher on the students' data."""
    from loca_mm.analysis.misinstruction import (measure_misinstruction,
                                                 summary_text)
    summary = measure_misinstruction(
        str(REPO / task.config),
        task.info['checkpoint'],
        task.work_dir,
        cfg_options=parse_options(task.options))
    # sys.stdout is the task's run.log here (see run_task).
    print(summary_text(summary))
    return {
        k: summary[k]
        for k in ('misinstruction_rate', 'teacher_top1', 'num_samples',
                  'calibrated_rate')
    }


def run_task(task: Task) -> dict:
    """Run one task in this process; its output goes to ``run.log``."""
    os.makedirs(task.work_dir, exist_ok=True)
    start, cpu_start = time.time(), time.process_time()
    log_path = osp.join(task.work_dir, 'run.log')
    with open(log_path, 'w') as log:
        try:
            with redirect_stdout(log), redirect_stderr(log):
                if task.kind == 'misinstruction':
                    result = _misinstruction(task)
                else:
                    result = _train(task)
        except Exception as error:
            raise RuntimeError(f'{task.name} failed ({error!r}); its log: '
                               f'{log_path}') from error
    result['seconds'] = round(time.time() - start, 1)
    # CPU time tells the cost on a shared machine, where wall time also
    # counts the waiting for a core.
    result['cpu_seconds'] = round(time.process_time() - cpu_start, 1)
    with open(osp.join(task.work_dir, 'result.json'), 'w') as f:
        json.dump({'spec': task.spec(), 'result': result}, f)
    return result


def _reused(task: Task) -> Optional[dict]:
    path = osp.join(task.work_dir, 'result.json')
    if not osp.exists(path):
        return None
    with open(path) as f:
        saved = json.load(f)
    return saved['result'] if saved.get('spec') == task.spec() else None


def describe(result: dict) -> str:
    parts = []
    if 'top1' in result:
        parts.append(f"top-1 {result['top1']:.2f}%")
    if 'misinstruction_rate' in result:
        parts.append('mis-instruction rate '
                     f"{100 * result['misinstruction_rate']:.2f}%")
    parts.append(f"{result['seconds']:.0f} s")
    if 'cpu_seconds' in result:
        parts.append(f"CPU {result['cpu_seconds']:.0f} s")
    return ', '.join(parts)


def worker_threads(jobs: int) -> int:
    """Intra-op threads of each of ``jobs`` workers: ``OMP_NUM_THREADS``
    where it is set, else an equal share of the CPUs (at least one)."""
    configured = os.environ.get('OMP_NUM_THREADS')
    if configured:
        if not configured.isdigit() or int(configured) < 1:
            raise ValueError('OMP_NUM_THREADS must be a positive integer, '
                             f'got {configured!r}')
        return int(configured)
    return max(1, (os.cpu_count() or 1) // jobs)


class _InThisProcess(Executor):
    """Runs each task when it is submitted, in this process."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future


def _executor(jobs: int, threads: int) -> Executor:
    """``jobs`` spawned worker processes; for one job this process instead,
    set up as a worker (a worker would import the stack once more)."""
    if jobs == 1:
        start_worker(threads)
        return _InThisProcess()
    return ProcessPoolExecutor(
        jobs,
        mp_context=get_context('spawn'),
        initializer=start_worker,
        initargs=(threads, ))


def run_tasks(tasks: List[Task], jobs: int, reuse: bool) -> Dict[str, dict]:
    """Run the tasks as their dependencies finish, ``jobs`` at a time (one
    job: in this process), each worker with :func:`worker_threads` threads
    (on a small CPU one thread per run is faster than threads contending
    within one run).

    Returns:
        dict: task name -> result.
    """
    names = {t.name for t in tasks}
    for task in tasks:
        missing = [d for d in task.deps if d not in names]
        if missing:
            raise ValueError(f'{task.name} depends on unknown {missing}')
    results, pending, running = {}, list(tasks), {}
    with _executor(jobs, worker_threads(jobs)) as pool:
        while pending or running:
            for task in list(pending):
                if len(running) >= jobs:
                    break
                if not all(d in results for d in task.deps):
                    continue
                pending.remove(task)
                earlier = _reused(task) if reuse else None
                if earlier is not None:
                    print(f'==> [{task.name}] reused: {describe(earlier)}',
                          flush=True)
                    results[task.name] = earlier
                    continue
                print(f'==> [{task.name}] {task.config} ' +
                      ' '.join(task.options),
                      flush=True)
                running[pool.submit(run_task, task)] = task
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task = running.pop(future)
                results[task.name] = future.result()
                print(f'<== [{task.name}] {describe(results[task.name])}',
                      flush=True)
    return results


def mean_std(values: Sequence[float]) -> dict:
    return dict(
        mean=statistics.fmean(values),
        std=statistics.stdev(values) if len(values) > 1 else 0.0,
        n=len(values),
        values=list(values))


def aggregate(teachers: Sequence[str], methods: Sequence[str],
              seeds: Sequence[int], tasks: List[Task],
              results: Dict[str, dict]) -> dict:
    """Per teacher: its accuracy, calibration and mis-instruction rate, and
    per method the students' metrics over seeds and the paired
    differences; then the fitted gain curves."""
    summary = dict(seeds=list(seeds), teachers={})
    runs = {}
    for task in tasks:
        if task.kind in ('student', 'distill'):
            key = (task.info.get('teacher'), task.info['method'])
            runs.setdefault(key, {})[task.info['seed']] = results[task.name]
    for teacher in teachers:
        trained = results[f'teacher {teacher}']
        entry = dict(
            label=TEACHERS[teacher].label,
            top1=trained['top1'],
            ece=trained['ece'],
            nll=trained['nll'],
            misinstruction=results[f'misinstruction {teacher}'],
            methods={})
        for method in methods:
            per_seed = runs[(None if method == 'student' else teacher,
                             method)]
            stats = dict(label=METHODS[method].label)
            for metric in ('top1', 'ece', 'nll'):
                stats[metric] = mean_std([per_seed[s][metric] for s in seeds])
            ratios = [per_seed[s].get('loca_ratio_mean') for s in seeds]
            if None not in ratios and method != 'student':
                stats['loca_ratio_mean'] = statistics.fmean(ratios)
            entry['methods'][method] = stats
        entry['differences'] = {}
        for first, second in COMPARISONS:
            if first in methods and second in methods:
                a = entry['methods'][first]['top1']['values']
                b = entry['methods'][second]['top1']['values']
                entry['differences'][f'{first} - {second}'] = mean_std(
                    [x - y for x, y in zip(a, b)])
        if 'student' in methods:
            entry['teacher_minus_student'] = (
                entry['top1'] - entry['methods']['student']['top1']['mean'])
        summary['teachers'][teacher] = entry
    summary['fits'] = fit_gains(summary)
    summary['runs'] = {
        t.name: dict(kind=t.kind, info=t.info, work_dir=t.work_dir,
                     **results[t.name])
        for t in tasks
    }
    return summary


def fit_gains(summary: dict) -> dict:
    """Lines through each gain against the mis-instruction rate (%) and
    against the teacher's top-1 minus the student's alone (points), with a
    bootstrap over seeds of where the gain crosses zero.

    A line is fitted only through :data:`.metrics.MIN_FIT_POINTS` teachers
    or more (with distinct x), and the bootstrap only over
    :data:`.metrics.MIN_BOOTSTRAP_SEEDS` seeds or more: fewer give a fit or
    an interval that cannot fail.
    """
    teachers = list(summary['teachers'].values())
    fits = {}
    if len(teachers) < MIN_FIT_POINTS:
        return fits
    predictors = {
        'misinstruction_rate':
        [100 * t['misinstruction']['misinstruction_rate'] for t in teachers]
    }
    if all('teacher_minus_student' in t for t in teachers):
        predictors['teacher_minus_student'] = [
            t['teacher_minus_student'] for t in teachers
        ]
    several_seeds = len(summary['seeds']) >= MIN_BOOTSTRAP_SEEDS
    for first, second in GAINS:
        name = f'{first} - {second}'
        if name not in teachers[0]['differences']:
            continue
        per_seed = [t['differences'][name]['values'] for t in teachers]
        for predictor, x in predictors.items():
            if len(set(x)) < MIN_FIT_POINTS:
                continue
            fit = linear_fit(x, [statistics.fmean(v) for v in per_seed])
            if several_seeds:
                fit['bootstrap'] = bootstrap_crossover(x, per_seed)
            fits.setdefault(name, {})[predictor] = fit
    return fits


def run(teachers: Sequence[str],
        methods: Sequence[str],
        seeds: Sequence[int],
        work_root: str,
        jobs: int = 2,
        reuse: bool = False,
        options: Sequence[str] = (),
        student_images: int = STUDENT_IMAGES) -> dict:
    """Run a study and return its summary (see :func:`aggregate`).

    Args:
        teachers, methods: keys of :data:`TEACHERS` and :data:`METHODS`.
        seeds: the students' seeds.
        work_root (str): parent of the runs' work directories.
        jobs (int): trainings at once. Defaults to 2. With 1, they run in
            this process, which is then set up as a worker
            (:func:`.worker.start_worker`).
        reuse (bool): keep results of earlier runs with the same config and
            options. Defaults to False.
        options: ``key=value`` overrides for every run (after the study's),
            e.g. a smaller schedule for a smoke test.
        student_images (int): the students' training images (the first
            ones). Defaults to :data:`STUDENT_IMAGES`.
    """
    if jobs < 1:
        raise ValueError(f'jobs must be >= 1, got {jobs!r}')
    start = time.time()
    tasks = build_tasks(teachers, methods, seeds, work_root, options,
                        student_images)
    for seed in seeds:
        init = initial_student(osp.abspath(work_root), seed)
        if not (reuse and osp.exists(init)):
            save_initial_student(seed, init)
    results = run_tasks(tasks, jobs, reuse)
    summary = aggregate(teachers, methods, seeds, tasks, results)
    summary.update(options=list(options),
                   student_images=student_images,
                   wall_seconds=round(time.time() - start, 1))
    return summary
