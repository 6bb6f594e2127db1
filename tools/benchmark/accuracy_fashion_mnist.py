"""Does LoCa help, and when? Student top-1 on Fashion-MNIST over seeds.

    python tools/benchmark/accuracy_fashion_mnist.py [--seeds 0 1 2]
        [--teachers strong weak] [--methods student kd loca ...]
        [--jobs 2] [--out-dir DIR] [--work-root DIR] [--reuse]
        [--cfg-options k=v ...]

Every run is ``tools/train.py`` on the project's Fashion-MNIST configs, in
its own process. Per teacher the script trains the teacher once, measures
its mis-instruction rate on the students' augmented training data
(``tools/analysis_tools/misinstruction.py``), and distils the student with
each method and seed. A seed fixes everything that differs between runs of
one method: the student's initial weights (saved once per seed and loaded
by every method, so runs are paired), the batch order and the augmentation.

Outputs in ``--out-dir``: ``results.json`` (every run and the aggregates),
``results.md`` (tables) and ``results.png`` (top-1 per method and teacher).
``--jobs`` runs that many trainings at once, each with
``cpu_count // jobs`` threads: on a small CPU, one thread per run is faster
than threads contending within one run.

``--cfg-options`` is passed to every run (teachers and students), e.g. to
shrink a smoke test: ``train_cfg.max_epochs=1 param_scheduler.T_max=1``.
"""
import argparse
import json
import os
import os.path as osp
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
VANILLA = 'configs/vanilla/fashion_mnist/'
DISTILL = 'configs/distill/fashion_mnist/'
PAIR = 'logits_convnet32x64_convnet16x32_1xb128_fashion_mnist.py'
STUDENT_CONFIG = VANILLA + 'convnet16x32_1xb128_fashion_mnist.py'
LOSS = 'model.distiller.distill_losses.loss_distill.'


@dataclass(frozen=True)
class Method:
    """A way to train the student: a config and overrides of it."""
    label: str
    config: str
    options: Sequence[str] = ()


@dataclass(frozen=True)
class Teacher:
    """A teacher: its training config and how it was trained, in words."""
    label: str
    config: str


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
}
TEACHERS: Dict[str, Teacher] = {
    'strong':
    Teacher('teacher A: 60k images, 2 epochs',
            VANILLA + 'convnet32x64_1xb128_fashion_mnist.py'),
    'weak':
    Teacher('teacher B: 5k images, 1 epoch',
            VANILLA + 'convnet32x64_1xb128-5k-1e_fashion_mnist.py'),
}
# The config whose data the mis-instruction rate is measured on: the
# students' training subset through the training pipeline.
MISINSTRUCTION_CONFIG = DISTILL + 'loca_' + PAIR
# The pairs whose per-seed differences the tables report.
COMPARISONS = (('loca', 'kd'), ('dkdloca', 'dkd'), ('kd', 'student'))


@dataclass
class Task:
    """One process to run: a training or the mis-instruction analysis."""
    name: str
    command: List[str]
    work_dir: str
    deps: List[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Student top-1 on Fashion-MNIST per method and teacher, '
        'over seeds')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--teachers', nargs='+', choices=list(TEACHERS), default=['strong'])
    parser.add_argument(
        '--methods', nargs='+', choices=list(METHODS), default=list(METHODS))
    parser.add_argument(
        '--jobs',
        type=int,
        default=min(2,
                    os.cpu_count() or 1),
        help='trainings run at once')
    parser.add_argument('--out-dir', default='outputs/benchmark_fashion_mnist')
    parser.add_argument(
        '--work-root',
        default='work_dirs/benchmark_fashion_mnist',
        help='parent of the runs\' work directories')
    parser.add_argument(
        '--reuse',
        action='store_true',
        help='keep runs finished earlier with the same command')
    parser.add_argument(
        '--title', default='Fashion-MNIST: student top-1 per method')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides for every run')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error('--jobs must be >= 1')
    return args


def save_initial_student(seed: int, path: str) -> None:
    """Save the student's initial weights for ``seed``.

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
    if MMLogger.check_instance_created('initial_student'):
        MMLogger.get_instance('initial_student')
    else:
        MMLogger.get_instance('initial_student', log_level='WARNING')
    set_random_seed(seed)
    model = MODELS.build(Config.fromfile(str(REPO / STUDENT_CONFIG)).model)
    model.init_weights()
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({
        'state_dict': model.state_dict(),
        'meta': {
            'seed': seed
        }
    }, path)


def cfg_options(options: Sequence[str]) -> List[str]:
    return ['--cfg-options', *options] if options else []


def train_command(config: str, work_dir: str,
                  options: Sequence[str]) -> List[str]:
    return [
        sys.executable,
        str(REPO / 'tools/train.py'),
        str(REPO / config), '--work-dir', work_dir, *cfg_options(options)
    ]


def build_tasks(args: argparse.Namespace) -> List[Task]:
    """The runs of the study, teachers first so that students can start."""
    root = osp.abspath(args.work_root)
    tasks = []
    teacher_ckpts = {}
    for name in args.teachers:
        work_dir = osp.join(root, f'teacher_{name}')
        teacher_ckpts[name] = osp.join(work_dir, 'final.pth')
        tasks.append(
            Task(
                f'teacher {name}',
                train_command(TEACHERS[name].config, work_dir,
                              args.cfg_options),
                work_dir,
                info=dict(kind='teacher', teacher=name)))
    for name in args.teachers:
        work_dir = osp.join(root, f'misinstruction_{name}')
        tasks.append(
            Task(
                f'misinstruction {name}', [
                    sys.executable,
                    str(REPO / 'tools/analysis_tools/misinstruction.py'),
                    str(REPO / MISINSTRUCTION_CONFIG), teacher_ckpts[name],
                    '--out-dir', work_dir, *cfg_options(args.cfg_options)
                ],
                work_dir,
                deps=[f'teacher {name}'],
                info=dict(kind='misinstruction', teacher=name)))
    for seed in args.seeds:
        init = osp.join(root, 'init', f'student_seed{seed}.pth')
        for method_name in args.methods:
            method = METHODS[method_name]
            seeded = [f'randomness.seed={seed}', *method.options]
            if method_name == 'student':
                work_dir = osp.join(root, f'student_seed{seed}')
                tasks.append(
                    Task(
                        f'student s{seed}',
                        train_command(method.config, work_dir, [
                            *seeded, 'model.init_cfg.type=Pretrained',
                            f'model.init_cfg.checkpoint={init}',
                            *args.cfg_options
                        ]),
                        work_dir,
                        info=dict(
                            kind='student',
                            method=method_name,
                            seed=seed,
                            init=init)))
                continue
            for teacher in args.teachers:
                work_dir = osp.join(root,
                                    f'{method_name}_{teacher}_seed{seed}')
                tasks.append(
                    Task(
                        f'{method_name} {teacher} s{seed}',
                        train_command(method.config, work_dir, [
                            *seeded,
                            f'model.teacher_ckpt={teacher_ckpts[teacher]}',
                            'model.architecture.init_cfg.type=Pretrained',
                            f'model.architecture.init_cfg.checkpoint={init}',
                            *args.cfg_options
                        ]),
                        work_dir,
                        deps=[f'teacher {teacher}'],
                        info=dict(
                            kind='distill',
                            method=method_name,
                            seed=seed,
                            teacher=teacher,
                            init=init)))
    return tasks


def read_scalars(work_dir: str) -> List[dict]:
    """The scalars of the newest run in ``work_dir`` (LocalVisBackend)."""
    runs = sorted(p for p in Path(work_dir).glob('*/vis_data/scalars.json'))
    if not runs:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}')
    with open(runs[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def training_result(work_dir: str) -> dict:
    """Final top-1, the teacher's top-1 and LoCa's logged statistics."""
    scalars = read_scalars(work_dir)
    result = {}
    for entry in scalars:
        for key, name in (('accuracy/top1', 'top1'), ('teacher/accuracy/top1',
                                                      'teacher_top1')):
            if key in entry:
                result[name] = entry[key]
    if 'top1' not in result:
        raise RuntimeError(f'no accuracy/top1 in the logs of {work_dir}')
    for key in ('loca_ratio', 'loca_scale'):
        values = [e[key] for e in scalars if key in e]
        if values:
            # Mean of the logged (10-iteration mean) values over training.
            result[f'{key}_mean'] = statistics.fmean(values)
    return result


def finish(task: Task) -> dict:
    """Collect a finished task's result and keep the teacher's weights."""
    if task.info['kind'] == 'misinstruction':
        with open(osp.join(task.work_dir, 'misinstruction.json')) as f:
            summary = json.load(f)
        return {
            k: summary[k]
            for k in ('misinstruction_rate', 'teacher_top1', 'num_samples',
                      'calibrated_rate')
        }
    result = training_result(task.work_dir)
    if task.info['kind'] == 'teacher':
        with open(osp.join(task.work_dir, 'last_checkpoint')) as f:
            last = f.read().strip()
        final = osp.join(task.work_dir, 'final.pth')
        if osp.lexists(final):
            os.remove(final)
        os.symlink(osp.basename(last), final)
    return result


class Scheduler:
    """Run tasks as their dependencies finish, ``jobs`` at a time.

    Each process's output goes to ``<work_dir>/run.log``; its progress lines
    (mmengine's ``Epoch(...)`` lines and the tools' summaries) are echoed
    with the task's name in front.
    """

    PROGRESS_MARKS = ('Epoch(', 'mis-instruction rate', 'teacher top-1')

    def __init__(self, jobs: int, reuse: bool) -> None:
        self.jobs = jobs
        self.reuse = reuse
        self.lock = threading.Lock()
        self.env = dict(os.environ)
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        self.env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        # Let the runs import loca_mm from this checkout, installed or not.
        self.env['PYTHONPATH'] = os.pathsep.join(
            filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))

    def echo(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    def _pump(self, task: Task, process: subprocess.Popen, log) -> None:
        for line in process.stdout:
            log.write(line)
            if any(mark in line for mark in self.PROGRESS_MARKS):
                self.echo(f'[{task.name}] {line.rstrip()}')

    def _done_before(self, task: Task) -> Optional[dict]:
        path = osp.join(task.work_dir, 'result.json')
        if not (self.reuse and osp.exists(path)):
            return None
        with open(path) as f:
            saved = json.load(f)
        return saved['result'] if saved.get('command') == task.command \
            else None

    def _start(self, task: Task):
        os.makedirs(task.work_dir, exist_ok=True)
        self.echo(f'==> [{task.name}] ' + ' '.join(
            osp.relpath(c, REPO) if c.startswith(str(REPO)) else c
            for c in task.command[1:]))
        log = open(osp.join(task.work_dir, 'run.log'), 'w')
        process = subprocess.Popen(
            task.command,
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1)
        pump = threading.Thread(
            target=self._pump, args=(task, process, log), daemon=True)
        pump.start()
        return process, pump, log, time.time()

    def run(self, tasks: List[Task]) -> Dict[str, dict]:
        """Run everything; returns task name -> result (with seconds)."""
        names = {t.name for t in tasks}
        for task in tasks:
            missing = [d for d in task.deps if d not in names]
            if missing:
                raise ValueError(f'{task.name} depends on unknown {missing}')
        results, pending, running = {}, list(tasks), {}
        try:
            while pending or running:
                self._start_ready(pending, running, results)
                time.sleep(0.2)
                self._collect_finished(running, results)
        finally:
            # Interrupted or failed: stop the runs this scheduler started.
            for _, process, *_ in running.values():
                process.terminate()
        return results

    def _start_ready(self, pending: List[Task], running: dict,
                     results: dict) -> None:
        for task in list(pending):
            if len(running) >= self.jobs:
                break
            if not all(d in results for d in task.deps):
                continue
            pending.remove(task)
            earlier = self._done_before(task)
            if earlier is not None:
                self.echo(f'==> [{task.name}] reused: {describe(earlier)}')
                results[task.name] = earlier
                continue
            running[task.name] = (task, *self._start(task))

    def _collect_finished(self, running: dict, results: dict) -> None:
        for name, (task, process, pump, log, start) in list(running.items()):
            if process.poll() is None:
                continue
            pump.join()
            log.close()
            del running[name]
            if process.returncode != 0:
                self._fail(task, process.returncode)
            result = finish(task)
            result['seconds'] = round(time.time() - start, 1)
            with open(osp.join(task.work_dir, 'result.json'), 'w') as f:
                json.dump({'command': task.command, 'result': result}, f)
            results[name] = result
            self.echo(f'<== [{name}] {describe(result)}')

    def _fail(self, task: Task, returncode: int) -> None:
        with open(osp.join(task.work_dir, 'run.log')) as f:
            tail = f.readlines()[-30:]
        self.echo(''.join(tail))
        raise RuntimeError(
            f'{task.name} failed (exit code {returncode}); full log: '
            f'{osp.join(task.work_dir, "run.log")}')


def describe(result: dict) -> str:
    parts = []
    if 'top1' in result:
        parts.append(f"top-1 {result['top1']:.2f}%")
    if 'misinstruction_rate' in result:
        parts.append('mis-instruction rate '
                     f"{100 * result['misinstruction_rate']:.2f}%")
    parts.append(f"{result['seconds']:.0f} s")
    return ', '.join(parts)


def mean_std(values: Sequence[float]) -> dict:
    return dict(
        mean=statistics.fmean(values),
        std=statistics.stdev(values) if len(values) > 1 else 0.0,
        n=len(values),
        values=list(values))


def aggregate(args: argparse.Namespace, tasks: List[Task],
              results: Dict[str, dict]) -> dict:
    """Per teacher: teacher top-1, mis-instruction, per-method statistics."""
    summary = dict(seeds=args.seeds, cfg_options=args.cfg_options, teachers={})
    by_method = {}
    for task in tasks:
        info = task.info
        if info['kind'] in ('student', 'distill'):
            key = (info.get('teacher'), info['method'])
            by_method.setdefault(key, {})[info['seed']] = \
                results[task.name]['top1']
    for teacher in args.teachers:
        entry = dict(
            label=TEACHERS[teacher].label,
            top1=results[f'teacher {teacher}']['top1'],
            misinstruction=results[f'misinstruction {teacher}'],
            methods={})
        for method in args.methods:
            per_seed = by_method[(None if method == 'student' else teacher,
                                  method)]
            entry['methods'][method] = dict(
                label=METHODS[method].label,
                **mean_std([per_seed[s] for s in args.seeds]))
            ratios = [
                results[f'{method} {teacher} s{s}'].get('loca_ratio_mean')
                for s in args.seeds if method != 'student'
            ]
            if ratios and None not in ratios:
                entry['methods'][method]['loca_ratio_mean'] = \
                    statistics.fmean(ratios)
        entry['differences'] = {}
        for first, second in COMPARISONS:
            if first in args.methods and second in args.methods:
                a = entry['methods'][first]['values']
                b = entry['methods'][second]['values']
                entry['differences'][f'{first} - {second}'] = mean_std(
                    [x - y for x, y in zip(a, b)])
        summary['teachers'][teacher] = entry
    summary['runs'] = {
        t.name: dict(info=t.info, work_dir=t.work_dir, **results[t.name])
        for t in tasks
    }
    return summary


def format_stat(stat: dict, signed: bool = False) -> str:
    sign = '+' if signed else ''
    text = f"{stat['mean']:{sign}.2f}"
    if stat['n'] > 1:
        text += f" ± {stat['std']:.2f}"
    return text


def markdown(summary: dict, title: str) -> str:
    """Tables of the summary."""
    teachers = list(summary['teachers'].values())
    seeds = summary['seeds']
    lines = [f'## {title}', '']
    lines.append(f'Student top-1 (%) on the 10,000 test images' +
                 (f', mean ± std over seeds {seeds}' if len(seeds) >
                  1 else f', seed {seeds[0]}') + '.')
    lines.append('')
    lines.append('| | ' + ' | '.join(t['label'] for t in teachers) + ' |')
    lines.append('|---' * (len(teachers) + 1) + '|')
    lines.append('| teacher top-1 | ' + ' | '.join(f"{t['top1']:.2f}"
                                                   for t in teachers) + ' |')
    lines.append('| teacher mis-instruction rate | ' + ' | '.join(
        f"{100 * t['misinstruction']['misinstruction_rate']:.2f}%"
        for t in teachers) + ' |')
    for method in teachers[0]['methods']:
        row = [t['methods'][method] for t in teachers]
        lines.append(f"| {row[0]['label']} | " +
                     ' | '.join(format_stat(s) for s in row) + ' |')
    differences = teachers[0]['differences']
    if differences and len(seeds) > 1:
        lines += [
            '', 'Paired differences (same seed: same initial student, '
            'batches and augmentation), percentage points:', ''
        ]
        lines.append('| | ' + ' | '.join(t['label'] for t in teachers) + ' |')
        lines.append('|---' * (len(teachers) + 1) + '|')
        for name in differences:
            cells = []
            for t in teachers:
                stat = t['differences'][name]
                cells.append(f"{format_stat(stat, signed=True)} "
                             f"(min {min(stat['values']):+.2f}, max "
                             f"{max(stat['values']):+.2f})")
            lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines += [
        '', 'Mis-instruction rate: share of the students\' augmented '
        'training images whose label is not the teacher\'s top-1.', ''
    ]
    return '\n'.join(lines)


def plot(summary: dict, path: str, title: str) -> None:
    """Bars of mean top-1 per method, one panel per teacher, seeds as dots."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    teachers = list(summary['teachers'].values())
    fig, axes = plt.subplots(
        1, len(teachers), figsize=(6.5 * len(teachers), 4.2), squeeze=False)
    for ax, teacher in zip(axes[0], teachers):
        methods = list(teacher['methods'].values())
        means = [m['mean'] for m in methods]
        ax.bar(
            range(len(methods)),
            means,
            yerr=[m['std'] for m in methods],
            color=['tab:gray'] + ['tab:blue'] * (len(methods) - 1),
            capsize=3)
        for index, method in enumerate(methods):
            ax.plot([index] * method['n'], method['values'], 'k.', ms=4)
        low = min(min(m['values']) for m in methods)
        high = max(max(m['values']) for m in methods)
        margin = max(1.0, 0.15 * (high - low))
        ax.set_ylim(low - margin, high + margin)
        ax.set_xticks(
            range(len(methods)), [m['label'] for m in methods],
            rotation=30,
            ha='right',
            fontsize=8)
        ax.set_ylabel('student top-1 (%)')
        rate = 100 * teacher['misinstruction']['misinstruction_rate']
        ax.set_title(
            f"{teacher['label']}\nteacher top-1 "
            f"{teacher['top1']:.1f}%, mis-instruction {rate:.1f}%",
            fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    # A plain `kill` then ends the runs too (see Scheduler.run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    start = time.time()
    tasks = build_tasks(args)
    for seed in args.seeds:
        init = osp.join(
            osp.abspath(args.work_root), 'init', f'student_seed{seed}.pth')
        if not (args.reuse and osp.exists(init)):
            save_initial_student(seed, init)
    results = Scheduler(args.jobs, args.reuse).run(tasks)
    summary = aggregate(args, tasks, results)
    summary['wall_seconds'] = round(time.time() - start, 1)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'results.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    table = markdown(summary, args.title)
    with open(osp.join(args.out_dir, 'results.md'), 'w') as f:
        f.write(table)
    plot(summary, osp.join(args.out_dir, 'results.png'), args.title)
    print('\n' + table)
    print(f"{len(tasks)} runs in {summary['wall_seconds']:.0f} s; results "
          f'in {args.out_dir}/results.{{md,json,png}}')
    return summary


if __name__ == '__main__':
    main()
