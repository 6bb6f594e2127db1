"""One prepared check of loca_mm on a machine with one GPU, in 5 minutes.

    bash tools/benchmark/gpu_check.sh [--out DIR] [--force] [--dry-run]

Writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (an existing pair is
kept unless ``--force``), rewritten after every part, so a stopped run keeps
what finished. Parts:

1. ``equality``: every registered loca_mm loss on CUDA against the CPU, loss
   and student gradient, for hard, soft and ignored labels, float32 and
   bfloat16 logits.
2. ``loss_syncs``: one training forward + backward of each registered loss
   under ``torch.cuda.set_sync_debug_mode('error')`` (target: none).
3. ``loss_timings``: forward + backward time and peak CUDA memory of
   ``LoCaLoss`` and ``DKDLoCaLoss`` against KD and DKD written here from their
   papers' formulas as mdistiller computes them, and mmrazor's
   ``KLDivergence``, at (64, 100), (256, 1000) and (4096, 32000), eager and
   ``torch.compile``-d; each time also as a ratio to KD's in the same mode.
4. ``training``: images/s of whole training iterations (``train_step``:
   teacher, student, loss, AMP optimizer step) of KD, LoCa, DKD and DKD+LoCa,
   resnet32x4 -> resnet8x4 (32x32, batch 64, float16 and bfloat16 AMP) and
   ResNet-50 -> MobileNetV1 (224x224, batch 256, bfloat16), each method's
   ratio to KD; a few iterations of the real training loop first (on random
   images and a random teacher checkpoint written here), and the host
   synchronisations of one iteration, those in loca_mm's files apart
   (target: none).
5. ``fused_linear``: ``loca_mm.functional.fused_linear_distill_loss`` against
   the loss on materialised logits at hidden 4096, vocabulary 128,256,
   bfloat16, 1,024 and 8,192 tokens: time and peak memory (for scale,
   Liger-Kernel's published H100 figures for its chunked JSD).
6. ``nccl``: ``tools/dist_train.sh CONFIG 1`` for a few iterations.

The parts run in this order (``--parts`` picks some). Each has a share of
``--time-limit`` (270 s on a GPU), plus what the parts before it left; a
measurement starts only if its part's time allows it, else it is recorded
as skipped. Without CUDA, or with ``--dry-run``, every part runs on the
CPU at tiny sizes (torch.compile with its ``eager`` backend, gloo in
dist_train.sh, no memory figures, no synchronisation counts): a test of the
code, not a measurement. Nothing here uses the network.
"""
import argparse
import contextlib
import gc
import glob
import gzip
import json
import math
import os
import os.path as osp
import pickle
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from typing import Callable, Dict, List, Optional

import loca_mm  # noqa: F401,I001  (stack repairs, registration)
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmpretrain.registry import MODELS
from mmrazor.models.losses import KLDivergence

from loca_mm import functional as LF
from loca_mm.models import losses as loca_losses
from loca_mm.utils import resolve_model_config
from loca_mm.utils.amp import amp_optim_wrapper

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TAU = 4.0
# Constructor arguments of the registered losses that have required ones.
LOSS_ARGS = {
    'LoCaCalibratedLoss': dict(loss=dict(type='mmrazor.KLDivergence'))
}
METHODS = {'KD': 'kd', 'LoCa': 'loca', 'DKD': 'dkd', 'DKD+LoCa': 'dkdloca'}
ARCHS = {
    'resnet32x4->resnet8x4': ('configs/distill/cifar100/{}_logits_resnet32x4_'
                              'resnet8x4_1xb64_cifar100.py'),
    'ResNet50->MobileNetV1': ('configs/distill/imagenet/{}_logits_resnet50_'
                              'mobilenetv1_8xb32_in1k.py'),
}
FASHION_CONFIG = ('configs/distill/fashion_mnist/loca_logits_convnet32x64_'
                  'convnet16x32_1xb128_fashion_mnist.py')
# Liger-Kernel's README, chunked fused-linear JSD on an H100: (GB, ms) of
# the fused loss and of the materialised logits.
LIGER_H100 = {1024: ((10.9, 8.3), (16.2, 28.7)), 8192: ((11.1, 60.7),
                                                        (68.9, 213.0))}

FULL = dict(
    loss_shapes=((64, 100), (256, 1000), (4096, 32000)),
    calls=20,
    training=(('resnet32x4->resnet8x4', 32, 64, ('float16', 'bfloat16'),
               tuple(METHODS)),
              ('ResNet50->MobileNetV1', 224, 256, ('bfloat16', ),
               tuple(METHODS))),
    loop_iters=3,
    timed_iters=10,
    lm=dict(tokens=(1024, 8192), hidden=4096, vocab=128256, chunk_size=1024),
    nccl_iters=4,
    compile_backend='inductor')
DRY = dict(
    loss_shapes=((8, 10), ),
    calls=1,
    training=(('resnet32x4->resnet8x4', 32, 2, ('bfloat16', ),
               ('KD', 'DKD+LoCa')),
              ('ResNet50->MobileNetV1', 64, 2, ('bfloat16', ),
               ('KD', 'LoCa'))),
    loop_iters=1,
    timed_iters=1,
    lm=dict(tokens=(24, ), hidden=16, vocab=40, chunk_size=8),
    nccl_iters=2,
    compile_backend='eager')
# The parts in the order they run, each with its share of the time limit:
# a part may use what the parts before it left, but not the shares of those
# after it. Sized on the H200 run of docs/benchmarks.md, where the first
# compilations made the loss timings the longest part (training used 62 s,
# fused_linear 2 s, nccl 26 s of 270).
PARTS = {
    'equality': 0.03,
    'loss_syncs': 0.02,
    'loss_timings': 0.45,
    'training': 0.30,
    'fused_linear': 0.05,
    'nccl': 0.15,
}
# Seconds a measurement needs on the GPU; it starts only with that left.
NEEDS = dict(
    equality=10,
    loss_syncs=5,
    eager_timing=5,
    compiled_timing=20,
    training=15,
    training_224=30,
    nccl=40,
    fused_linear=8)


class Clock:
    """The time left, and how much of ``NEEDS`` a measurement needs (none
    at the dry run's tiny sizes)."""

    def __init__(self, seconds: float, need_scale: float = 1.0):
        self.deadline = time.monotonic() + seconds
        self.need_scale = need_scale

    def left(self) -> float:
        return self.deadline - time.monotonic()


def measure(rows: List[dict], clock: Clock, need: float,
            fn: Callable[[], dict], **labels) -> Optional[dict]:
    """Append ``labels`` and ``fn()``'s figures to ``rows``; if fewer than
    ``need`` seconds are left, or ``fn`` fails, say so in the row instead."""
    row = dict(labels)
    rows.append(row)
    need *= clock.need_scale
    if clock.left() < need:
        row['skipped'] = f'{clock.left():.0f} s left, needs {need:.0f} s'
        return None
    try:
        row.update(fn())
    except Exception as exc:  # recorded; the other measurements go on
        row['error'] = ''.join(traceback.format_exception_only(
            type(exc), exc)).strip()[:500]
        return None
    return row


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# --- 1, 2: the registered losses ---------------------------------------


def training_loss(name: str, device: torch.device, **kwargs):
    """A registered loss in training mode, attached as ``LoCaLossHook``
    attaches it."""
    loss_class = getattr(loca_losses, name)
    loss = loss_class(**LOSS_ARGS.get(name, {}), **kwargs).to(device).train()
    loss.attach_runner(train_loop_by_epoch=True)
    return loss


def loss_inputs(case: str, device: torch.device, dtype: torch.dtype,
                num: int = 64, classes: int = 100, seed: int = 0):
    """Student logits (leaf), teacher logits and labels of one case."""
    g = torch.Generator().manual_seed(seed)
    preds_S = 2 * torch.randn(num, classes, generator=g)
    preds_T = 3 * torch.randn(num, classes, generator=g)
    labels = torch.randint(classes, (num, ), generator=g)
    if case == 'soft':
        labels = 0.8 * F.one_hot(labels, classes) + 0.2 / classes
    elif case == 'ignored':
        labels[::5] = -100
    return (preds_S.to(device, dtype).requires_grad_(),
            preds_T.to(device, dtype), labels.to(device))


def loss_and_gradient(name: str, device: torch.device, case: str,
                      dtype: torch.dtype):
    kwargs = {'ignore_index': -100} if case == 'ignored' else {}
    loss = training_loss(name, device, **kwargs)
    preds_S, preds_T, labels = loss_inputs(case, device, dtype)
    value = loss(preds_S, preds_T, labels)
    value.backward()
    return value.detach().cpu().double(), preds_S.grad.cpu().double()


def check_equality(device: torch.device, clock: Clock) -> List[dict]:
    """Loss and gradient on ``device`` against the CPU."""
    rows: List[dict] = []
    for name in loca_losses.__all__:
        for case in ('hard', 'soft', 'ignored'):
            for dtype in (torch.float32, torch.bfloat16):

                def compare(name=name, case=case, dtype=dtype):
                    (loss_d, grad_d), (loss_c, grad_c) = (
                        loss_and_gradient(name, where, case, dtype)
                        for where in (device, torch.device('cpu')))
                    loss_diff = ((loss_d - loss_c).abs() /
                                 loss_c.abs().clamp_min(1e-12)).item()
                    grad_diff = ((grad_d - grad_c).abs().max() /
                                 grad_c.abs().max().clamp_min(1e-12)).item()
                    # float32 kernels sum in another order; bfloat16 ones
                    # also round their partial results differently.
                    tol = 1e-5 if dtype == torch.float32 else 2e-2
                    return dict(
                        loss_rel_diff=loss_diff,
                        grad_rel_diff=grad_diff,
                        ok=loss_diff <= tol and grad_diff <= tol
                        and math.isfinite(loss_d.item()))

                measure(rows, clock, NEEDS['equality'] / 12, compare,
                        loss=name, labels=case, dtype=str(dtype)[6:])
    return rows


@contextlib.contextmanager
def sync_debug_mode(device: torch.device, mode: str):
    """``torch.cuda.set_sync_debug_mode(mode)`` inside; nothing on CPU."""
    if device.type != 'cuda':
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def check_loss_syncs(device: torch.device, clock: Clock) -> List[dict]:
    """A training forward + backward of each registered loss (after a
    warm-up call) under sync debug mode 'error'."""
    rows: List[dict] = []
    for name in loca_losses.__all__:

        def run(name=name):
            loss = training_loss(name, device)
            preds_S, preds_T, labels = loss_inputs('hard', device,
                                                   torch.float32)
            loss(preds_S, preds_T, labels).backward()
            synchronize(device)
            try:
                with sync_debug_mode(device, 'error'):
                    loss(preds_S, preds_T, labels).backward()
            except RuntimeError as exc:
                return dict(syncs='>= 1', first=str(exc).splitlines()[0])
            return dict(syncs=0 if device.type == 'cuda' else 'not counted')

        measure(rows, clock, NEEDS['loss_syncs'], run, loss=name)
    return rows


# --- 3: loss timings -----------------------------------------------------


def kd_formula(preds_S, preds_T, target):
    """KD (Hinton et al. 2015) as mdistiller computes it:
    ``tau**2 * mean_n KL(softmax(t / tau) || softmax(s / tau))``."""
    log_p_s = F.log_softmax(preds_S / TAU, dim=1)
    p_t = F.softmax(preds_T / TAU, dim=1)
    return F.kl_div(log_p_s, p_t, reduction='none').sum(1).mean() * TAU**2


def dkd_formula(preds_S, preds_T, target, tckd_weight=1.0, nckd_weight=8.0):
    """DKD (Zhao et al., CVPR 2022) as mdistiller computes it: TCKD, the KL
    of the binary (target, rest) distributions, plus ``nckd_weight`` times
    NCKD, the KL among the non-target classes (target logit masked out by
    subtracting 1000), both ``tau**2 * batch mean``."""
    gt = F.one_hot(target, preds_S.shape[1]).to(preds_S.dtype)

    def binary(probs):  # (target, every other class)
        return torch.cat([(probs * gt).sum(1, keepdim=True),
                          (probs * (1 - gt)).sum(1, keepdim=True)], 1)

    b_s = binary(F.softmax(preds_S / TAU, dim=1))
    b_t = binary(F.softmax(preds_T / TAU, dim=1))
    tckd = F.kl_div(torch.log(b_s), b_t, reduction='sum')
    nckd = F.kl_div(
        F.log_softmax(preds_S / TAU - 1000.0 * gt, dim=1),
        F.softmax(preds_T / TAU - 1000.0 * gt, dim=1),
        reduction='sum')
    return (tckd_weight * tckd + nckd_weight * nckd) * TAU**2 / len(target)


def timed_losses(device: torch.device) -> Dict[str, Callable]:
    """The losses of the timing table, each ``(preds_S, preds_T, labels)
    -> scalar``; the registered ones with statistics on, as in training."""
    kl = KLDivergence(tau=TAU).to(device)
    return {
        'KD (mdistiller)': kd_formula,
        'DKD (mdistiller)': dkd_formula,
        'KLDivergence (mmrazor)': lambda s, t, y: kl(s, t),
        'LoCaLoss': training_loss('LoCaLoss', device),
        'DKDLoCaLoss': training_loss('DKDLoCaLoss', device),
    }


def time_call(call: Callable[[], None], device: torch.device,
              calls: int) -> float:
    """Median over three rounds of the mean seconds of ``calls`` calls."""
    rounds = []
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            call()
        synchronize(device)
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def peak_mib(call: Callable[[], None], device: torch.device):
    """Peak CUDA memory (MiB) of one call above what was allocated before
    it."""
    if device.type != 'cuda':
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def time_losses(device: torch.device, clock: Clock, sizes: dict) -> List[dict]:
    """Forward + backward of each loss, eager and compiled."""
    rows: List[dict] = []
    for mode in ('eager', 'compiled'):
        for num, classes in sizes['loss_shapes']:
            preds_S, preds_T, labels = loss_inputs('hard', device,
                                                   torch.float32, num,
                                                   classes)
            for name, loss in timed_losses(device).items():

                def run(loss=loss, mode=mode):
                    if mode == 'compiled':
                        torch._dynamo.reset()  # a fresh graph per loss
                        loss = torch.compile(
                            loss, backend=sizes['compile_backend'])

                    def step():
                        preds_S.grad = None
                        loss(preds_S, preds_T, labels).backward()

                    start = time.perf_counter()
                    step()  # warm-up, compilation included
                    synchronize(device)
                    first = time.perf_counter() - start
                    return dict(
                        ms=1e3 * time_call(step, device, sizes['calls']),
                        peak_mib=peak_mib(step, device),
                        first_call_s=first)

                measure(rows, clock, NEEDS[f'{mode}_timing'], run,
                        shape=f'{num}x{classes}', mode=mode, loss=name)
    for row in rows:
        kd = next((r for r in rows if r['shape'] == row['shape'] and r['mode']
                   == row['mode'] and r['loss'] == 'KD (mdistiller)'), {})
        if 'ms' in row and 'ms' in kd:
            row['time_vs_kd'] = row['ms'] / kd['ms']
    return rows


# --- 4: training --------------------------------------------------------


def write_cifar100(root: str, num_train: int) -> None:
    """Random images in CIFAR-100's pickle layout."""
    folder = osp.join(root, 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, num in (('train', num_train), ('test', 16)):
        with open(osp.join(folder, split), 'wb') as f:
            pickle.dump(
                {
                    'data': rng.integers(0, 256, (num, 3 * 32 * 32),
                                         dtype=np.uint8),
                    'fine_labels': rng.integers(0, 100, num).tolist()
                }, f)


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


def training_config(config: str, work_dir: str, data_root: str,
                    teacher_ckpt: str, image_size: int, batch_size: int,
                    precision: str, cuda: bool) -> Config:
    """``config`` as ``tools/train.py --amp`` builds it (``precision``
    'bfloat16': ``optim_wrapper.dtype``), one epoch on the random
    CIFAR-layout images under ``data_root``, resized to ``image_size``,
    without augmentation, validation or checkpoints."""
    cfg = Config.fromfile(osp.join(REPO, config))
    pipeline = [
        dict(type='Resize', scale=(image_size, image_size)),
        dict(type='PackInputs')
    ]
    cfg.merge_from_dict({
        'work_dir': work_dir,
        'model.teacher_ckpt': teacher_ckpt,
        'train_dataloader.batch_size': batch_size,
        'train_dataloader.num_workers': 4 if cuda else 0,
        'train_dataloader.persistent_workers': False,
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint': None,
        'log_level': 'WARNING',
    })
    cfg.train_dataloader.dataset = dict(
        type='CIFAR100',
        data_root=data_root,
        split='train',
        pipeline=pipeline)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.train_cfg.val_interval = 10**9
    if precision == 'bfloat16':
        cfg.optim_wrapper.dtype = 'bfloat16'
    cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper)
    cfg.experiment_name = osp.basename(work_dir)
    return cfg


def save_random_teacher(cfg: Config, path: str) -> None:
    teacher = MODELS.build(resolve_model_config(cfg.model.teacher))
    torch.save({'state_dict': teacher.state_dict()}, path)


@contextlib.contextmanager
def recorded_syncs(device: torch.device, records: List[str]):
    """Append the ``file:line`` of every CUDA synchronisation inside."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with sync_debug_mode(device, 'warn'):
            yield
    records += [
        f'{osp.relpath(w.filename, REPO)}:{w.lineno}' for w in caught
        if 'synchroniz' in str(w.message)
    ]


def train(tmp: str, arch: str, method: str, image_size: int,
          batch_size: int, precision: str, sizes: dict,
          device: torch.device) -> dict:
    """The real training loop for a few iterations, then timed
    ``train_step``s on one batch already on the device."""
    from mmengine.runner import Runner
    cuda = device.type == 'cuda'
    data_root = osp.join(tmp, f'cifar_{batch_size}')
    if not osp.exists(data_root):
        write_cifar100(data_root, sizes['loop_iters'] * batch_size)
    name = f'{arch}_{method}_{precision}'.replace('>', '')
    teacher = osp.join(tmp, f'{arch}_teacher.pth'.replace('>', ''))
    cfg = training_config(ARCHS[arch].format(METHODS[method]),
                          osp.join(tmp, name), data_root, teacher,
                          image_size, batch_size, precision, cuda)
    if not osp.exists(teacher):
        save_random_teacher(cfg, teacher)
    with unchecked_cifar_files():
        runner = Runner.from_cfg(cfg)
        runner.train()
        losses = [
            float(v)
            for v in runner.message_hub.get_scalar('train/loss').data[0]
        ]
        batch = next(iter(runner.train_dataloader))
    model, optim_wrapper = runner.model, runner.optim_wrapper
    batch = model.data_preprocessor.cast_data(batch)
    step = lambda: model.train_step(batch, optim_wrapper)  # noqa: E731
    step()
    seconds = time_call(step, device, sizes['timed_iters'])
    syncs: List[str] = []
    with recorded_syncs(device, syncs):
        step()
    return dict(
        images_per_s=batch_size / seconds,
        optim_wrapper=type(optim_wrapper).__name__,
        loop_losses=losses,
        finite=bool(losses) and all(map(math.isfinite, losses)),
        iteration_syncs=len(syncs) if cuda else 'not counted',
        syncs_in_loca_mm=[s for s in syncs if s.startswith('loca_mm')])


def check_training(device: torch.device, clock: Clock,
                   sizes: dict) -> List[dict]:
    rows: List[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for (arch, image_size, batch_size, precisions,
             methods) in sizes['training']:
            need = NEEDS['training_224' if image_size > 100 else 'training']
            for precision in precisions:
                group = []
                for method in methods:
                    row = measure(
                        rows,
                        clock,
                        need,
                        lambda: train(tmp, arch, method, image_size,
                                      batch_size, precision, sizes, device),
                        arch=arch,
                        method=method,
                        images=f'{batch_size}x{image_size}x{image_size}',
                        precision=precision)
                    group.append(row)
                    gc.collect()  # the Runner's cycles hold CUDA memory
                    if device.type == 'cuda':
                        torch.cuda.empty_cache()
                kd = group[0]
                for row in group:
                    if row and kd:
                        row['throughput_vs_kd'] = (row['images_per_s'] /
                                                   kd['images_per_s'])
    return rows


# --- 5: tools/dist_train.sh -----------------------------------------------


def write_fashion_mnist(root: str, num_train: int) -> None:
    """Random images in the IDX files the Fashion-MNIST configs read."""
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


def dist_train(clock: Clock, iterations: int) -> dict:
    """``tools/dist_train.sh CONFIG 1`` (NCCL on CUDA, else gloo) on random
    Fashion-MNIST images."""
    with tempfile.TemporaryDirectory() as tmp:
        data = osp.join(tmp, 'fashion_mnist')
        write_fashion_mnist(data, 128 * iterations)
        cfg = Config.fromfile(osp.join(REPO, FASHION_CONFIG))
        teacher = osp.join(tmp, 'teacher.pth')
        save_random_teacher(cfg, teacher)
        work_dir = osp.join(tmp, 'work')
        command = [
            'bash',
            osp.join(REPO, 'tools/dist_train.sh'),
            osp.join(REPO, FASHION_CONFIG), '1', '--work-dir', work_dir,
            '--no-validate', '--cfg-options', f'model.teacher_ckpt={teacher}',
            f'train_dataloader.dataset.data_root={data}',
            'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1'
        ]
        # dist_train.sh starts `python`: this one, also where only
        # python3 is on the PATH.
        bin_dir = osp.join(tmp, 'bin')
        os.makedirs(bin_dir)
        with open(osp.join(bin_dir, 'python'), 'w') as f:
            f.write(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        os.chmod(osp.join(bin_dir, 'python'), 0o755)
        env = dict(
            os.environ,
            PATH=bin_dir + os.pathsep + os.environ.get('PATH', ''),
            PORT=str(29500 + os.getpid() % 1000))
        start = time.perf_counter()
        done = subprocess.run(
            command,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(clock.left() - 5, 10))
        output = done.stdout + done.stderr
        losses = []
        for path in sorted(
                glob.glob(osp.join(work_dir, '*/vis_data/scalars.json'))):
            with open(path) as f:
                losses += [
                    json.loads(line)['loss'] for line in f if '"loss"' in line
                ]
    return dict(
        exit_code=done.returncode,
        seconds=time.perf_counter() - start,
        # loca_mm.utils.launch says when it replaces the configs' nccl.
        backend='gloo' if 'using the gloo backend' in output else 'nccl',
        losses=losses,
        ok=done.returncode == 0 and len(losses) == iterations
        and all(map(math.isfinite, losses)),
        **({} if done.returncode == 0 else dict(log_tail=output[-2000:])))


def check_dist_train(clock: Clock, sizes: dict) -> dict:
    rows: List[dict] = []
    measure(rows, clock, NEEDS['nccl'],
            lambda: dist_train(clock, sizes['nccl_iters']), gpus=1)
    return rows[0]


# --- 6: the fused-linear language-model loss ---------------------------------


def check_fused_linear(device: torch.device, clock: Clock,
                       sizes: dict) -> List[dict]:
    """Time and peak memory of a forward + backward from hidden states: the
    fused-linear loss against logits materialised by the output layers."""
    lm = sizes['lm']
    rows: List[dict] = []
    for tokens in lm['tokens']:
        for method in ('materialised logits', 'fused linear'):

            def run(tokens=tokens, method=method):
                g = torch.Generator(device).manual_seed(0)

                def randn(*shape, scale=1.0):
                    return scale * torch.randn(
                        *shape, generator=g, device=device).to(torch.bfloat16)

                hidden, vocab = lm['hidden'], lm['vocab']
                h_s = randn(tokens, hidden).requires_grad_()
                w_s = randn(vocab, hidden, scale=hidden**-0.5).requires_grad_()
                h_t = randn(tokens, hidden)
                w_t = randn(vocab, hidden, scale=hidden**-0.5)
                target = torch.randint(
                    vocab, (tokens, ), generator=g, device=device)

                def step():
                    h_s.grad = w_s.grad = None
                    if method == 'fused linear':
                        out = LF.fused_linear_distill_loss(
                            h_s, w_s, h_t, w_t, target,
                            chunk_size=lm['chunk_size'])
                    else:
                        out = LF.loca_kd_loss(h_s @ w_s.T, h_t @ w_t.T,
                                              target)
                    out.loss.backward()

                step()
                ms = 1e3 * time_call(step, device, 1)
                # Liger counts the whole peak: inputs and weights included.
                if device.type == 'cuda':
                    h_s.grad = w_s.grad = None
                    torch.cuda.reset_peak_memory_stats(device)
                    step()
                    synchronize(device)
                    peak = torch.cuda.max_memory_allocated(device) / 1e9
                else:
                    peak = None
                liger = LIGER_H100.get(tokens)
                return dict(
                    ms=ms,
                    peak_gb=peak,
                    liger_h100_ms=liger and liger[method != 'fused linear'][1],
                    liger_h100_gb=liger
                    and liger[method != 'fused linear'][0])

            measure(rows, clock, NEEDS['fused_linear'], run,
                    tokens=tokens, hidden=lm['hidden'], vocab=lm['vocab'],
                    method=method)
    return rows


# --- the report -----------------------------------------------------------


def table(rows: List[dict]) -> List[str]:
    """A markdown table of ``rows`` (columns: every key, first seen first)."""
    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def cell(value):
        if isinstance(value, float):
            return f'{value:.3g}'
        if isinstance(value, list) and len(value) > 4:
            value = [cell(v) for v in value[:4]] + ['...']
        return '' if value is None else str(value).replace('|', '/')

    return ['| ' + ' | '.join(columns) + ' |',
            '|' + '---|' * len(columns)] + [
                '| ' + ' | '.join(cell(row.get(c)) for c in columns) + ' |'
                for row in rows
            ] + ['']


def markdown(report: dict) -> str:
    out = [f"# GPU check: {report['device']}", '']
    out += [f'- {key}: {value}' for key, value in report['environment'].items()]
    out += ['']
    for part, result in report['parts'].items():
        out += [f'## {part} ({report["seconds"][part]:.0f} s)', '']
        out += table(result if isinstance(result, list) else [result])
    for part, error in report['errors'].items():
        out += [f'## {part}: FAILED', '', '```', error, '```', '']
    return '\n'.join(out)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='outputs/gpu_check')
    parser.add_argument(
        '--force', action='store_true', help='overwrite an earlier report')
    parser.add_argument(
        '--dry-run',
        action='store_true',
        help='every part on the CPU at tiny sizes, also where CUDA is there')
    parser.add_argument(
        '--time-limit',
        type=float,
        help='seconds for the whole check (default 270; dry run 1200)')
    parser.add_argument(
        '--parts',
        nargs='+',
        choices=list(PARTS),
        default=list(PARTS),
        help='the parts to run, in this order (default: all)')
    return parser.parse_args(argv)


def environment(cuda: bool) -> dict:
    # A copied working tree has no git: LOCA_MM_COMMIT names its commit.
    commit = os.environ.get('LOCA_MM_COMMIT', '')
    if not commit:
        try:
            commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                                    cwd=REPO,
                                    capture_output=True,
                                    text=True).stdout.strip()
        except OSError:
            pass
    return dict(
        loca_mm=f"{loca_mm.__version__} {commit or '(no git)'}",
        python=platform.python_version(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        mode='GPU check' if cuda else 'dry run on the CPU at tiny sizes')


def run(args: argparse.Namespace) -> dict:
    """Run every part; return the report (also written under ``--out``)."""
    paths = [osp.join(args.out, f'gpu_check.{ext}') for ext in ('json', 'md')]
    for path in paths:
        if osp.exists(path) and not args.force:
            raise FileExistsError(
                f'{path} exists: pass --force to overwrite it, or another '
                '--out')
    os.makedirs(args.out, exist_ok=True)
    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device('cuda' if cuda else 'cpu')
    sizes = FULL if cuda else DRY
    limit = args.time_limit if args.time_limit is not None else \
        270 if cuda else 1200
    overall = Clock(limit)
    # The running part's deadline.
    clock = Clock(limit, need_scale=1.0 if cuda else 0.0)
    report = dict(
        device=torch.cuda.get_device_name(0) if cuda else 'CPU (dry run)',
        environment=environment(cuda),
        parts={},
        seconds={},
        errors={})
    parts = {
        'equality': lambda: check_equality(device, clock),
        'loss_syncs': lambda: check_loss_syncs(device, clock),
        'training': lambda: check_training(device, clock, sizes),
        'loss_timings': lambda: time_losses(device, clock, sizes),
        'fused_linear': lambda: check_fused_linear(device, clock, sizes),
        'nccl': lambda: check_dist_train(clock, sizes),
    }
    shares = sum(PARTS[name] for name in args.parts)
    for index, name in enumerate(args.parts):
        later = sum(PARTS[later] for later in args.parts[index + 1:])
        clock.deadline = overall.deadline - limit * later / shares
        part = parts[name]
        start = time.perf_counter()
        try:
            report['parts'][name] = part()
        except Exception as exc:  # recorded; the next part goes on
            report['errors'][name] = ''.join(
                traceback.format_exception(type(exc), exc,
                                           exc.__traceback__))[-3000:]
        report['seconds'][name] = time.perf_counter() - start
        print(f'{name}: {report["seconds"][name]:.1f} s'
              f"{'  FAILED' if name in report['errors'] else ''}",
              flush=True)
        with open(paths[0], 'w') as f:
            json.dump(report, f, indent=2)
        with open(paths[1], 'w') as f:
            f.write(markdown(report))
    print(f'written to {paths[0]} and {paths[1]}')
    return report


def failures(report: dict) -> List[str]:
    """What went wrong: failed parts, measurements with an error, and
    equality or dist_train checks that did not hold."""
    found = list(report['errors'])
    for part, rows in report['parts'].items():
        for row in rows if isinstance(rows, list) else [rows]:
            if row and ('error' in row or row.get('ok') is False):
                found.append(f'{part}: {row}')
    return found


def main() -> None:
    report = run(parse_args())
    problems = failures(report)
    for problem in problems:
        print('FAILED', problem[:300])
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
