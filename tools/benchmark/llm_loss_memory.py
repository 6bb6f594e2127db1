"""Peak CPU memory of the per-token distillation loss of a language model.

    python tools/benchmark/llm_loss_memory.py [--tokens 4096] \\
        [--vocabs 32000 50257] [--chunk-size 256] [--threads 2]

For each vocabulary size and loss, a fresh process allocates student and
teacher logits (tokens x vocab, float32) and labels, runs forward and
backward once to warm up, then once measured. Memory is the process's
resident set: its peak (VmHWM, reset through /proc/self/clear_refs before
the measured pass) minus its size with the inputs allocated. Linux only.
The workers run with glibc's mmap threshold fixed at 1 MiB, so every
tensor of 1 MiB or more is its own mapping, returned to the system when
it is freed: the resident set then follows live tensor memory.

Columns: ``kept`` is what autograd keeps alive between forward and
backward; ``peak`` is the maximum over forward and backward, including the
gradient of the student logits (one buffer, needed by every method).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import time

# A fixed threshold also turns off glibc's dynamic one, which would move
# freed tensors below 32 MiB onto the heap, where they stay resident.
WORKER_ENV = {**os.environ, 'MALLOC_MMAP_THRESHOLD_': str(2**20)}

METHODS = {
    'kd': 'KD (torch kl_div, unchunked)',
    'loca': 'LoCa-KD (loca_kd_loss, unchunked)',
    'loca_chunked': 'LoCa-KD (chunked_distill_loss)',
    'ce_kd': '0.5 CE + 0.5 KD (torch, unchunked)',
    'trainer': '0.5 CE + 0.5 LoCa-KD (LoCaDistillTrainer loss, chunked)',
}


def memory_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        return int(re.search(rf'{field}:\s+(\d+) kB', f.read()).group(1))


def reset_peak() -> None:
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def build_loss(method: str, chunk_size: int, tau: float):
    import torch.nn.functional as F

    import loca_mm  # noqa: F401  (the same imports for every method)
    from loca_mm import functional as LF

    def kd(preds_S, preds_T):
        return F.kl_div(
            F.log_softmax(preds_S / tau, -1),
            F.log_softmax(preds_T / tau, -1),
            log_target=True,
            reduction='batchmean') * tau**2

    if method == 'kd':
        return lambda S, T, y: kd(S, T)
    if method == 'ce_kd':
        return lambda S, T, y: 0.5 * F.cross_entropy(S, y) + 0.5 * kd(S, T)
    if method == 'loca':
        return lambda S, T, y: LF.loca_kd_loss(S, T, y, tau=tau).loss
    if method == 'loca_chunked':
        return lambda S, T, y: LF.chunked_distill_loss(
            LF.loca_kd_loss, S, T, y, chunk_size=chunk_size, tau=tau).loss
    from loca_mm.integrations.transformers import response_token_loss

    def trainer_loss(S, T, y):
        # One sequence; labels are token ids, shifted inside.
        labels = y.roll(1).unsqueeze(0)
        return response_token_loss(
            S.unsqueeze(0),
            T.unsqueeze(0),
            labels,
            lambda *a, **k: LF.loca_kd_loss(*a, tau=tau, **k),
            chunk_size=chunk_size).loss

    return trainer_loss


def measure(method: str, tokens: int, vocab: int, chunk_size: int,
            threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    loss_fn = build_loss(method, chunk_size, tau=1.0)
    generator = torch.Generator().manual_seed(0)
    preds_S = torch.randn(tokens, vocab, generator=generator)
    preds_S.requires_grad_()
    preds_T = torch.randn(tokens, vocab, generator=generator)
    labels = torch.randint(0, vocab, (tokens, ), generator=generator)

    loss_fn(preds_S, preds_T, labels).backward()  # warm-up
    preds_S.grad = None
    gc.collect()
    base = memory_kib('VmRSS')
    reset_peak()
    start = time.perf_counter()
    loss = loss_fn(preds_S, preds_T, labels)
    kept = memory_kib('VmRSS') - base
    loss.backward()
    seconds = time.perf_counter() - start
    peak = memory_kib('VmHWM') - base
    return {
        'method': method,
        'tokens': tokens,
        'vocab': vocab,
        'kept_mib': kept / 1024,
        'peak_mib': peak / 1024,
        'seconds': seconds,
        'loss': loss.item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tokens', type=int, default=4096)
    parser.add_argument(
        '--vocabs', type=int, nargs='+', default=[32000, 50257])
    parser.add_argument('--chunk-size', type=int, default=256)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument(
        '--methods', nargs='+', choices=tuple(METHODS), default=list(METHODS))
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, vocab = args.worker.split(':')
        print(
            json.dumps(
                measure(method, args.tokens, int(vocab), args.chunk_size,
                        args.threads)))
        return
    print(f'tokens={args.tokens}, chunk_size={args.chunk_size}, '
          f'threads={args.threads}; MiB above the inputs (student + teacher '
          'logits); one (tokens x vocab) float32 buffer is given as "buf"\n')
    print('| vocab | loss | kept for backward | peak (fwd + bwd) | '
          'time (s) |')
    print('|---|---|---|---|---|')
    for vocab in args.vocabs:
        buffer = args.tokens * vocab * 4 / 2**20
        for method in args.methods:
            command = [
                sys.executable, __file__, '--worker', f'{method}:{vocab}',
                '--tokens',
                str(args.tokens), '--chunk-size',
                str(args.chunk_size), '--threads',
                str(args.threads)
            ]
            output = subprocess.run(
                command,
                check=True,
                capture_output=True,
                text=True,
                env=WORKER_ENV).stdout
            row = json.loads(output.strip().splitlines()[-1])
            print(
                f"| {vocab} | {METHODS[method]} | "
                f"{row['kept_mib']:.0f} MiB ({row['kept_mib'] / buffer:.1f}"
                f" buf) | {row['peak_mib']:.0f} MiB "
                f"({row['peak_mib'] / buffer:.1f} buf) | "
                f"{row['seconds']:.2f} |",
                flush=True)


if __name__ == '__main__':
    main()
