"""One prepared check of loca_mm's GPU path, for a machine with one GPU.

    python tools/benchmark/gpu_check.py [--out DIR] [--force] [--dry-run]
    bash tools/benchmark/gpu_check.sh [--out DIR] ...

Parts, each recorded as it finishes (``DIR/gpu_check.json`` and
``DIR/gpu_check.md``; an existing summary is not overwritten without
``--force``):

1. ``equality``: ``LoCaLoss`` and ``DKDLoCaLoss`` (default arguments,
   training mode) on the GPU against the CPU: loss and student gradient,
   hard, soft and ignored labels, float32 and bfloat16 logits.
2. ``syncs``, ``compiled``: host-device synchronisations under
   ``torch.cuda.set_sync_debug_mode('warn')``: per forward + backward of
   each loss (target 0), and per ``train_step`` of the CIFAR-100 config,
   attributed to the file that caused each; ``torch.compile(fullgraph=
   True)`` (inductor) of each loss's training call against eager.
3. ``timings``: ``tools/benchmark/loss_speed.py``'s side-by-side table
   (mdistiller, mmrazor, loca_mm eager and compiled) on the GPU, with the
   peak CUDA memory of each loss.
4. ``training``: 50 iterations of
   ``configs/distill/cifar100/loca_logits_resnet32x4_resnet8x4_1xb64_cifar100.py``
   with ``--amp`` (float16, loss scaling) and with bfloat16, on random
   CIFAR-shaped data and a random teacher checkpoint written here: finite
   losses, and the AMP wrapper in use.
5. ``nccl``: ``tools/dist_train.sh`` with one GPU (NCCL) for a few
   iterations of the Fashion-MNIST LoCa config on random data.

Without CUDA (or with ``--dry-run``) it says so and runs the CPU side of
parts 1 and 4 (equality against the CPU itself, building the configs, two
CPU bfloat16 iterations) and exits 0. Nothing here uses the network.
"""
import argparse
import contextlib
import glob
import json
import math
import os
import os.path as osp
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Optional

import loca_mm  # noqa: F401,I001  (stack repairs, registration)
import numpy as np
import torch
from mmengine.config import Config

from loca_mm.models.losses import DKDLoCaLoss, LoCaLoss
from loca_mm.utils import resolve_model_config
from loca_mm.utils.amp import amp_optim_wrapper

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CIFAR_CONFIG = ('configs/distill/cifar100/'
                'loca_logits_resnet32x4_resnet8x4_1xb64_cifar100.py')
FASHION_CONFIG = ('configs/distill/fashion_mnist/loca_logits_convnet32x64_'
                  'convnet16x32_1xb128_fashion_mnist.py')
TIMING_SHAPES = ((64, 100), (256, 1000), (4096, 32000))
LOSSES: Dict[str, Callable[..., torch.nn.Module]] = {
    'LoCaLoss': lambda **kw: LoCaLoss(tau=4.0, alpha=0.9, **kw),
    'DKDLoCaLoss': lambda **kw: DKDLoCaLoss(tau=4.0, nckd_weight=8.0, **kw),
}


def training_loss(name: str, device: torch.device,
                  **kwargs) -> torch.nn.Module:
    """A registered loss in training mode, statistics collected (as under
    ``LoCaLossHook``)."""
    loss = LOSSES[name](**kwargs).to(device).train()
    loss.attach_runner(train_loop_by_epoch=True)
    return loss


def loss_inputs(case: str, device: torch.device, dtype: torch.dtype,
                num: int = 64, classes: int = 100, seed: int = 0):
    """Student logits (leaf), teacher logits and labels of one test case."""
    g = torch.Generator().manual_seed(seed)
    preds_S = 2 * torch.randn(num, classes, generator=g)
    preds_T = 3 * torch.randn(num, classes, generator=g)
    labels = torch.randint(classes, (num, ), generator=g)
    if case == 'soft':
        labels = 0.8 * torch.nn.functional.one_hot(labels, classes) + 0.002
    elif case == 'ignored':
        labels[::5] = -100
    return (preds_S.to(device, dtype).requires_grad_(),
            preds_T.to(device, dtype), labels.to(device))


def check_equality(device: torch.device) -> List[dict]:
    """Loss and gradient on ``device`` against the CPU, per case."""
    rows = []
    for name in LOSSES:
        for case in ('hard', 'soft', 'ignored'):
            for dtype in (torch.float32, torch.bfloat16):
                kwargs = {'ignore_index': -100} if case == 'ignored' else {}
                outputs = []
                for where in (device, torch.device('cpu')):
                    loss = training_loss(name, where, **kwargs)
                    preds_S, preds_T, labels = loss_inputs(case, where, dtype)
                    value = loss(preds_S, preds_T, labels)
                    value.backward()
                    outputs.append((value.detach().cpu().double(),
                                    preds_S.grad.cpu().double(),
                                    loss.take_calibration_totals().cpu()))
                (loss_d, grad_d, stats_d), (loss_c, grad_c, stats_c) = outputs
                # float32 kernels differ in summation order; bfloat16
                # gradients differ by their rounding.
                tol = 1e-5 if dtype == torch.float32 else 1e-2
                loss_diff = abs(loss_d - loss_c).item() / max(
                    abs(loss_c.item()), 1e-12)
                grad_diff = (grad_d - grad_c).abs().max().item() / max(
                    grad_c.abs().max().item(), 1e-12)
                rows.append(
                    dict(
                        loss=name,
                        case=case,
                        dtype=str(dtype).replace('torch.', ''),
                        relative_loss_difference=loss_diff,
                        relative_gradient_difference=grad_diff,
                        statistics_equal=bool(torch.equal(stats_d, stats_c)),
                        ok=loss_diff <= tol and grad_diff <= tol
                        and math.isfinite(loss_d.item())))
    return rows


@contextlib.contextmanager
def recorded_syncs(records: List[str]):
    """Append the ``file:line`` of every CUDA synchronisation inside."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    for w in caught:
        if 'synchroniz' in str(w.message):
            where = (osp.relpath(w.filename, REPO)
                     if w.filename.startswith(REPO) else w.filename)
            records.append(f'{where}:{w.lineno}')


def count_loss_syncs(device: torch.device) -> List[dict]:
    """Synchronisations of one training forward + backward of each loss,
    after a warm-up call (allocator and kernel caches filled)."""
    rows = []
    for name in LOSSES:
        loss = training_loss(name, device)
        preds_S, preds_T, labels = loss_inputs('hard', device, torch.float32)
        loss(preds_S, preds_T, labels).backward()
        torch.cuda.synchronize(device)
        syncs: List[str] = []
        with recorded_syncs(syncs):
            loss(preds_S, preds_T, labels).backward()
        rows.append(
            dict(
                loss=name,
                syncs=len(syncs),
                where=syncs,
                from_loca_mm=sum('loca_mm' in s for s in syncs)))
    # 'error' mode, as the issue states the target: no exception.
    for name in LOSSES:
        loss = training_loss(name, device)
        preds_S, preds_T, labels = loss_inputs('hard', device, torch.float32)
        torch.cuda.set_sync_debug_mode('error')
        try:
            loss(preds_S, preds_T, labels).backward()
            error = None
        except RuntimeError as exc:
            error = str(exc).splitlines()[0]
        finally:
            torch.cuda.set_sync_debug_mode('default')
        next(r for r in rows if r['loss'] == name)['error_mode'] = (
            error or 'no synchronisation')
    return rows


def check_compiled(device: torch.device) -> List[dict]:
    """``torch.compile(fullgraph=True)`` (inductor) of a training call of
    each loss, default arguments and without the label check: one graph,
    equal to eager in loss, gradient and statistics."""
    rows = []
    for name in LOSSES:
        for kwargs in ({}, {'check_labels': False}):
            row = dict(loss=name, arguments=kwargs or 'defaults')
            try:
                eager = training_loss(name, device, **kwargs)
                compiled = training_loss(name, device, **kwargs)
                call = torch.compile(
                    lambda loss, s, t, y: loss(s, t, y), fullgraph=True)
                diffs = []
                for seed in range(2):
                    preds_S, preds_T, labels = loss_inputs(
                        'hard', device, torch.float32, seed=seed)
                    twin = preds_S.detach().clone().requires_grad_()
                    expected = eager(preds_S, preds_T, labels)
                    got = call(compiled, twin, preds_T, labels)
                    expected.backward()
                    got.backward()
                    diffs.append(
                        max((got - expected).abs().item(),
                            (twin.grad - preds_S.grad).abs().max().item()))
                row.update(
                    max_difference=max(diffs),
                    statistics_equal=torch.allclose(
                        eager.take_calibration_totals(),
                        compiled.take_calibration_totals()),
                    ok=max(diffs) < 1e-4)
            except Exception as exc:  # a graph break, recorded
                row.update(ok=False, error=str(exc).splitlines()[0][:300])
            rows.append(row)
    return rows


def time_losses(device: torch.device, repeats: int) -> List[dict]:
    """loss_speed.py's table on ``device`` (wall clock, synchronised)."""
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    import loss_speed
    results = []
    for shape in TIMING_SHAPES:
        results.append(
            loss_speed.benchmark_losses(shape, device, time.perf_counter,
                                        repeats, 3, True))
    return results


def write_cifar100(root: str, num_train: int, num_test: int) -> None:
    """Random images in CIFAR-100's pickle layout
    (``cifar-100-python/{train,test}``)."""
    folder = osp.join(root, 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, num in (('train', num_train), ('test', num_test)):
        rows = rng.integers(0, 256, (num, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 100, num).tolist()
        with open(osp.join(folder, split), 'wb') as f:
            pickle.dump({'data': rows, 'fine_labels': labels}, f)


@contextlib.contextmanager
def unchecked_cifar_files():
    """mmpretrain's CIFAR100 checks the md5 sums of the released files and
    downloads on a mismatch; the random files here only need to exist."""
    from mmpretrain.datasets import CIFAR100
    original = CIFAR100._check_integrity
    CIFAR100._check_integrity = lambda self: all(
        osp.exists(osp.join(self.data_prefix['root'], self.base_folder, n))
        for n, _ in self.train_list + self.test_list)
    try:
        yield
    finally:
        CIFAR100._check_integrity = original


def cifar_config(work_dir: str,
                 data_root: str,
                 teacher_ckpt: str,
                 precision: Optional[str],
                 batch_size: int,
                 config: str = CIFAR_CONFIG) -> Config:
    """A CIFAR-100 distillation config as ``tools/train.py --amp`` builds
    it (``precision`` None: float32; 'bfloat16': ``optim_wrapper.dtype``),
    for one epoch on ``data_root``."""
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.merge_from_dict({
        'work_dir': work_dir,
        'model.teacher_ckpt': teacher_ckpt,
        'train_dataloader.dataset.data_root': data_root,
        'train_dataloader.batch_size': batch_size,
        'train_dataloader.num_workers': 2 if torch.cuda.is_available() else 0,
        'train_dataloader.persistent_workers': torch.cuda.is_available(),
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': 10,
        'default_hooks.checkpoint': None,
        'log_level': 'WARNING',
    })
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.train_cfg.val_interval = 10**9
    if precision is not None:
        if precision == 'bfloat16':
            cfg.optim_wrapper.dtype = 'bfloat16'
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper)
    cfg.experiment_name = f'gpu_check_{precision or "float32"}'
    return cfg


def save_random_teacher(cfg: Config, path: str) -> None:
    from mmpretrain.registry import MODELS
    teacher = MODELS.build(resolve_model_config(cfg.model.teacher))
    torch.save({'state_dict': teacher.state_dict()}, path)


def train_cifar(tmp: str,
                precision: Optional[str],
                iterations: int,
                batch_size: int,
                count_syncs: bool,
                config: str = CIFAR_CONFIG) -> dict:
    """Train ``iterations`` steps of ``config`` on random data; the losses
    of every step, the optimizer wrapper, and (on CUDA) the
    synchronisations of one more step."""
    from mmengine.runner import Runner
    data_root = osp.join(tmp, 'cifar100')
    if not osp.exists(data_root):
        write_cifar100(data_root, iterations * batch_size, 16)
    teacher = osp.join(tmp, 'teacher.pth')
    cfg = cifar_config(
        osp.join(tmp, f'work_{precision}'), data_root, teacher, precision,
        batch_size, config)
    if not osp.exists(teacher):
        save_random_teacher(cfg, teacher)
    losses: List[float] = []
    with unchecked_cifar_files():
        runner = Runner.from_cfg(cfg)
        runner.train()
        history = runner.message_hub.get_scalar('train/loss')
        losses = [float(v) for v in history.data[0]]
        result = dict(
            precision=precision or 'float32',
            optim_wrapper=type(runner.optim_wrapper).__name__,
            iterations=runner.iter,
            losses=losses,
            finite=bool(losses) and all(map(math.isfinite, losses)))
        if count_syncs:
            batch = next(iter(runner.train_dataloader))
            syncs: List[str] = []
            with recorded_syncs(syncs):
                runner.model.train_step(batch, runner.optim_wrapper)
            result['train_step_syncs'] = len(syncs)
            result['train_step_syncs_from_loca_mm'] = [
                s for s in syncs if 'loca_mm' in s
            ]
            result['train_step_sync_sites'] = sorted(set(syncs))
    return result


def nccl_dist_train(tmp: str, iterations: int = 4) -> dict:
    """``tools/dist_train.sh CONFIG 1`` (NCCL) on random Fashion-MNIST."""
    data = osp.join(tmp, 'fashion_mnist')
    write_fashion_mnist(data, 128 * iterations)
    cfg = Config.fromfile(osp.join(REPO, FASHION_CONFIG))
    from mmpretrain.registry import MODELS
    teacher = osp.join(tmp, 'fashion_teacher.pth')
    torch.save({'state_dict': MODELS.build(cfg.model.teacher).state_dict()},
               teacher)
    work_dir = osp.join(tmp, 'work_nccl')
    command = [
        'bash', osp.join(REPO, 'tools/dist_train.sh'),
        osp.join(REPO, FASHION_CONFIG), '1', '--work-dir', work_dir,
        '--cfg-options', f'model.teacher_ckpt={teacher}',
        f'train_dataloader.dataset.data_root={data}',
        f'val_dataloader.dataset.data_root={data}',
        f'test_dataloader.dataset.data_root={data}', 'train_cfg.max_epochs=1',
        'default_hooks.logger.interval=1', '--no-validate'
    ]
    env = dict(os.environ, PORT=str(29500 + os.getpid() % 1000))
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True,
        timeout=180)
    lines = []
    for path in sorted(
            glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            lines += [json.loads(line) for line in f if '"loss"' in line]
    losses = [line['loss'] for line in lines]
    return dict(
        returncode=done.returncode,
        seconds=time.perf_counter() - start,
        nccl='nccl' in (done.stdout + done.stderr).lower(),
        losses=losses,
        finite=bool(losses) and all(map(math.isfinite, losses)),
        tail=(done.stdout + done.stderr)[-2000:])


def write_fashion_mnist(root: str, num_train: int) -> None:
    """Random images in the IDX files the Fashion-MNIST configs read."""
    import gzip
    import struct
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, num in (('train', num_train), ('t10k', 16)):
        images = rng.integers(0, 256, (num, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, num, dtype=np.uint8)
        for kind, array in (('images-idx3', images), ('labels-idx1', labels)):
            header = bytes([0, 0, 8, array.ndim]) + struct.pack(
                f'>{array.ndim}I', *array.shape)
            with gzip.open(osp.join(root, f'{split}-{kind}-ubyte.gz'),
                           'wb') as f:
                f.write(header + array.tobytes())


def markdown(report: dict) -> str:
    """The summary of whatever parts have finished."""
    out = [f"# GPU check ({report['device']})", '',
           f"loca_mm {report['source']}, torch {report['torch']}, "
           f"{report['mode']}.", '']
    if 'equality' in report:
        out += ['## CUDA against CPU', '',
                '| loss | labels | dtype | loss rel. diff | grad rel. diff '
                '| statistics equal | ok |', '|---|---|---|---|---|---|---|']
        out += [
            f"| {r['loss']} | {r['case']} | {r['dtype']} | "
            f"{r['relative_loss_difference']:.2e} | "
            f"{r['relative_gradient_difference']:.2e} | "
            f"{r['statistics_equal']} | {r['ok']} |"
            for r in report['equality']
        ] + ['']
    if 'syncs' in report:
        out += ['## Synchronisations per forward + backward (target 0)', '',
                '| loss | syncs | from loca_mm | error mode | where |',
                '|---|---|---|---|---|']
        out += [
            f"| {r['loss']} | {r['syncs']} | {r['from_loca_mm']} | "
            f"{r['error_mode']} | {', '.join(r['where']) or '-'} |"
            for r in report['syncs']
        ] + ['']
    if 'compiled' in report:
        out += ['## torch.compile(fullgraph=True), inductor, against eager',
                '', '| loss | arguments | max difference | ok | error |',
                '|---|---|---|---|---|']
        out += [
            f"| {r['loss']} | {r['arguments']} | "
            f"{r.get('max_difference', float('nan')):.2e} | {r['ok']} | "
            f"{r.get('error', '')} |" for r in report['compiled']
        ] + ['']
    if 'timings' in report:
        out += ['## Forward + backward time and peak CUDA memory', '']
        for result in report['timings']:
            out += [f"(N, C) = {tuple(result['shape'])}", '',
                    '| loss | median ms | peak MiB |', '|---|---|---|']
            out += [
                f"| {name} | {1e3 * sec:.3f} | "
                f"{result['peak_bytes'][name] / 2**20:.2f} |"
                for name, sec in result['seconds'].items()
            ]
            out += ['', '| ratio | time | target |', '|---|---|---|']
            out += [
                f"| {r['loss']} / {r['baseline']} | {r['time']:.2f}x | "
                f"{'' if r['target'] is None else r['target']} |"
                for r in result['ratios']
            ] + ['']
    for run in report.get('training', []):
        out += [
            f"## {run['precision']} training: {run['iterations']} "
            f"iterations, {run['optim_wrapper']}, finite: {run['finite']}",
            '', 'losses: ' + ', '.join(f'{v:.4f}' for v in run['losses']), ''
        ]
        if 'train_step_syncs' in run:
            out += [
                f"train_step synchronisations: {run['train_step_syncs']} "
                f"(from loca_mm: {run['train_step_syncs_from_loca_mm']}); "
                f"sites: {', '.join(run['train_step_sync_sites'])}", ''
            ]
    if 'nccl' in report:
        run = report['nccl']
        out += [
            f"## tools/dist_train.sh, 1 GPU: exit {run['returncode']}, "
            f"{run['seconds']:.0f} s, finite losses: {run['finite']}", '',
            'losses: ' + ', '.join(f'{v:.4f}' for v in run['losses']), ''
        ]
    for part, error in report.get('errors', {}).items():
        out += [f'## {part}: FAILED', '', '```', error, '```', '']
    return '\n'.join(out)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='outputs/gpu_check')
    parser.add_argument(
        '--force', action='store_true', help='overwrite an earlier summary')
    parser.add_argument(
        '--dry-run',
        action='store_true',
        help='only the CPU parts, also where CUDA is available')
    parser.add_argument(
        '--config',
        default=CIFAR_CONFIG,
        help='the CIFAR-100 distillation config of the training part')
    parser.add_argument('--iterations', type=int, default=50)
    parser.add_argument('--repeats', type=int, default=7)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Run every part that the machine allows; return the report."""
    out_json = osp.join(args.out, 'gpu_check.json')
    out_md = osp.join(args.out, 'gpu_check.md')
    for path in (out_json, out_md):
        if osp.exists(path) and not args.force:
            raise FileExistsError(
                f'{path} exists: pass --force to overwrite it, or another '
                '--out')
    os.makedirs(args.out, exist_ok=True)
    cuda = torch.cuda.is_available() and not args.dry_run
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from loss_speed import source_version
    report = dict(
        source=source_version(),
        torch=torch.__version__,
        device=torch.cuda.get_device_name(0) if cuda else 'cpu',
        mode='full check' if cuda else
        'dry run of the CPU parts (no CUDA device)' if not
        torch.cuda.is_available() else 'dry run of the CPU parts (--dry-run)',
        errors={})
    if not cuda:
        print(report['mode'] + ': equality against the CPU itself, the '
              'configs, two CPU bfloat16 iterations; no timings.')

    def save():
        with open(out_json, 'w') as f:
            json.dump(report, f, indent=2)
        with open(out_md, 'w') as f:
            f.write(markdown(report))

    device = torch.device('cuda' if cuda else 'cpu')
    with tempfile.TemporaryDirectory() as tmp:
        parts = [('equality', lambda: check_equality(device))]
        if cuda:
            parts += [('syncs', lambda: count_loss_syncs(device)),
                      ('compiled', lambda: check_compiled(device)),
                      ('timings', lambda: time_losses(device, args.repeats))]
        iterations = args.iterations if cuda else 2
        batch_size = 64 if cuda else 4
        precisions = ('float16', 'bfloat16') if cuda else ('bfloat16', )
        parts.append(('training', lambda: [
            train_cifar(tmp, p, iterations, batch_size, cuda, args.config)
            for p in precisions
        ]))
        if cuda:
            parts.append(('nccl', lambda: nccl_dist_train(tmp)))
        for name, part in parts:
            start = time.perf_counter()
            try:
                report[name] = part()
            except Exception as exc:  # record and go on to the next part
                import traceback
                report['errors'][name] = ''.join(
                    traceback.format_exception(exc))[-3000:]
            report.setdefault('seconds', {})[name] = time.perf_counter() - \
                start
            print(f'{name}: {report["seconds"][name]:.1f} s'
                  f"{'  FAILED' if name in report['errors'] else ''}")
            save()
    print(f'written to {out_json} and {out_md}')
    return report


def main() -> None:
    args = parse_args()
    report = run(args)
    failed = bool(report['errors']) or not all(
        r['ok'] for part in ('equality', 'compiled')
        for r in report.get(part, []))
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
