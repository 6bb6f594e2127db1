"""Peak CPU memory of the per-token distillation loss of a language model.

    python tools/benchmark/llm_loss_memory.py [--tokens 4096] \\
        [--vocabs 32000 50257] [--chunk-size 256] [--threads 2]
    python tools/benchmark/llm_loss_memory.py --projection \\
        --shapes 4096x50257x768 8192x32000x512 --repeats 3 \\
        --methods logits fused fused --chunk-sizes 256 1024 1024 \\
        --block-sizes 128 128 256 [--response-fraction 1]

For each vocabulary size and loss, a fresh process allocates student and
teacher logits (tokens x vocab, float32) and labels, runs forward and
backward once to warm up, then once measured. With ``--projection`` the
inputs are the models' last hidden states (tokens x hidden) and output
weights (vocab x hidden) instead, and each method includes the output
layers: the trainer's materialised path (both logits formed, then its
chunked loss) against the fused-linear loss; memory is then above the
hidden states and weights, and the gradients of the student's hidden
states and weight are part of the peak. The methods run in interleaved
rounds (``--repeats``), each in a fresh process; times are medians over
the rounds, ratios per round against the first method. Memory is the
process's resident set: its peak (VmHWM, reset through /proc/self/clear_refs before
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
import functools
import gc
import json
import os
import re
import statistics
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

PROJECTION_METHODS = {
    'logits': 'output layers, then 0.5 CE + 0.5 LoCa-KD chunked '
    '(materialised logits)',
    'fused': '0.5 CE + 0.5 LoCa-KD fused with the output layers',
    'fused_compiled': 'the same, compile=True (torch.compile per block)',
    'liger': "Liger-Kernel's LigerFusedLinearJSDLoss, 0.5 CE + 0.5 forward "
    'KL (beta=0), compiled=False',
    'liger_compiled': 'the same, compiled=True (its default)',
}


def run_worker(command: list[str]) -> dict:
    """Run one measurement in a fresh process; its last line is JSON."""
    output = subprocess.run(
        command, check=True, capture_output=True, text=True,
        env=WORKER_ENV).stdout
    return json.loads(output.strip().splitlines()[-1])


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


def build_projection_loss(method: str, chunk_size: int, block_size: int):
    """Loss of (hidden_S, weight_S, hidden_T, weight_T, labels), the
    labels being one sequence of token ids with -100 where not scored."""
    import torch
    import torch.nn.functional as F

    import loca_mm  # noqa: F401
    from loca_mm import functional as LF
    from loca_mm.integrations.transformers import (fused_response_token_loss,
                                                   response_token_loss)
    distill_fn = functools.partial(LF.loca_kd_loss, tau=1.0)

    def materialised(h_S, head_S, h_T, head_T, labels):
        # As in the trainer: the logits are freed when the loss returns,
        # before backward; the chunked loss keeps its gradient buffer.
        logits_S = F.linear(h_S, head_S.weight)
        with torch.no_grad():
            logits_T = F.linear(h_T, head_T.weight)
        return response_token_loss(
            logits_S.unsqueeze(0),
            logits_T.unsqueeze(0),
            labels.unsqueeze(0),
            distill_fn,
            chunk_size=chunk_size).loss

    def fused(h_S, head_S, h_T, head_T, labels):
        return fused_response_token_loss(
            h_S.unsqueeze(0),
            head_S,
            h_T.unsqueeze(0),
            head_T,
            labels.unsqueeze(0),
            distill_fn,
            chunk_size=chunk_size,
            block_size=block_size,
            compile=method == 'fused_compiled').loss

    if method.startswith('liger'):
        # Not a dependency of loca_mm: pip install liger-kernel to compare.
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss
        liger = LigerFusedLinearJSDLoss(
            weight_hard_loss=0.5, weight_soft_loss=0.5, beta=0.0,
            temperature=1.0, compiled=method == 'liger_compiled',
            chunk_size=chunk_size)

        def liger_loss(h_S, head_S, h_T, head_T, labels):
            # The labels of the next tokens, as the trainer's shift gives.
            shifted = F.pad(labels[1:], (0, 1), value=-100)
            return liger(h_S, head_S.weight, h_T, head_T.weight, shifted)

        return liger_loss
    return materialised if method == 'logits' else fused


def measure_projection(method: str, tokens: int, vocab: int, hidden: int,
                       chunk_size: int, block_size: int, threads: int,
                       response_fraction: float) -> dict:
    import torch
    torch.set_num_threads(threads)
    loss_fn = build_projection_loss(method, chunk_size, block_size)
    generator = torch.Generator().manual_seed(0)
    h_S = torch.randn(tokens, hidden, generator=generator).requires_grad_()
    h_T = torch.randn(tokens, hidden, generator=generator)
    torch.manual_seed(0)  # the same output layers in every worker
    head_S = torch.nn.Linear(hidden, vocab, bias=False)
    head_T = torch.nn.Linear(hidden, vocab, bias=False).requires_grad_(False)
    labels = torch.randint(0, vocab, (tokens, ), generator=generator)
    # The first (1 - fraction) of the sequence is prompt: not scored.
    labels[:int(round(tokens * (1 - response_fraction)))] = -100

    def step():
        loss = loss_fn(h_S, head_S, h_T, head_T, labels)
        loss.backward()
        return loss

    step()  # warm-up
    h_S.grad = head_S.weight.grad = None
    gc.collect()
    base = memory_kib('VmRSS')
    reset_peak()
    start, start_cpu = time.perf_counter(), time.process_time()
    loss = step()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - start_cpu
    peak = memory_kib('VmHWM') - base
    return {
        'method': method,
        'tokens': tokens,
        'vocab': vocab,
        'hidden': hidden,
        'peak_mib': peak / 1024,
        'seconds': seconds,
        'cpu_seconds': cpu_seconds,
        'loss': loss.item(),
    }


def projection_shapes(args) -> list[tuple[int, int, int]]:
    """(tokens, vocab, hidden) per shape: ``--shapes``, else ``--tokens``
    and ``--hidden`` with each of ``--vocabs``."""
    if not args.shapes:
        return [(args.tokens, vocab, args.hidden) for vocab in args.vocabs]
    shapes = []
    for shape in args.shapes:
        try:
            tokens, vocab, hidden = (int(n) for n in shape.split('x'))
        except ValueError:
            raise SystemExit(f'--shapes: expected TOKENSxVOCABxHIDDEN, got '
                             f'{shape!r}') from None
        shapes.append((tokens, vocab, hidden))
    return shapes


def main_projection(args) -> None:
    """Every method once per round, ``--repeats`` rounds, per shape: the
    methods alternate, so that a change of the machine's load reaches them
    alike. Ratios are against the first method, per round, then the
    median over rounds."""
    configs = list(zip(args.methods, args.chunk_sizes, args.block_sizes))
    print(f'threads={args.threads}, response fraction '
          f'{args.response_fraction}, {args.repeats} interleaved rounds; '
          'peak MiB above the hidden states and output weights; one '
          '(tokens x vocab) float32 buffer is given as "buf"; times are '
          'wall-clock and process CPU (all threads) of one forward + '
          'backward, medians over rounds; ratios against the first row '
          'of the shape\n')
    table = [
        '| tokens x vocab, hidden | method | chunk | block | '
        'peak (fwd + bwd) | peak ratio | wall (s) | CPU (s) | wall ratio | '
        'CPU ratio | loss |', '|---|---|---|---|---|---|---|---|---|---|---|'
    ]
    for tokens, vocab, hidden in projection_shapes(args):
        buffer = tokens * vocab * 4 / 2**20
        rounds = []
        for repeat in range(args.repeats):
            rounds.append([])
            for method, chunk_size, block_size in configs:
                command = [
                    sys.executable, __file__, '--projection', '--worker',
                    f'{method}:{vocab}', '--tokens',
                    str(tokens), '--hidden',
                    str(hidden), '--chunk-size',
                    str(chunk_size), '--block-size',
                    str(block_size), '--threads',
                    str(args.threads), '--response-fraction',
                    str(args.response_fraction)
                ]
                row = run_worker(command)
                rounds[-1].append(row)
                print(f'round {repeat + 1}: {tokens}x{vocab}, {hidden} '
                      f'{method} {chunk_size}/{block_size}: '
                      f'{json.dumps(row)}', flush=True)
        for index, (method, chunk_size, block_size) in enumerate(configs):
            rows = [round_[index] for round_ in rounds]

            def median(values):
                return statistics.median(values)

            peak = median(row['peak_mib'] for row in rows)
            ratios = {
                key: median(round_[index][key] / round_[0][key]
                            for round_ in rounds)
                for key in ('seconds', 'cpu_seconds')
            }
            peak_ratio = median(round_[0]['peak_mib'] / round_[index]['peak_mib']
                                for round_ in rounds)
            table.append(
                f'| {tokens} x {vocab}, {hidden} | '
                f'{PROJECTION_METHODS[method]} | {chunk_size} | '
                f"{block_size if method.startswith('fused') else '-'} | "
                f'{peak:.0f} MiB ({peak / buffer:.2f} buf) | '
                f'{peak_ratio:.2f}x less | '
                f"{median(row['seconds'] for row in rows):.2f} | "
                f"{median(row['cpu_seconds'] for row in rows):.2f} | "
                f"{ratios['seconds']:.2f}x | {ratios['cpu_seconds']:.2f}x | "
                f"{rows[0]['loss']:.6f} |")
    print()
    print('\n'.join(table))


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
    parser.add_argument('--tokens', type=int, default=4096,
                        help='tokens (rows of the logits) per batch')
    parser.add_argument(
        '--vocabs', type=int, nargs='+', default=[32000, 50257],
        help='vocabulary sizes, one measurement each')
    parser.add_argument('--chunk-size', type=int, default=256,
                        help='tokens per chunk of the chunked losses')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch CPU threads of each worker')
    parser.add_argument(
        '--methods', nargs='+',
        help=f'losses to compare: without --projection from {list(METHODS)} '
        f'(default: all), with it from {list(PROJECTION_METHODS)} '
        '(default: logits fused fused); liger* need '
        '`pip install liger-kernel`')
    parser.add_argument(
        '--projection',
        action='store_true',
        help='include the output layers: materialised logits vs fused')
    parser.add_argument('--hidden', type=int, default=768,
                        help='with --projection: hidden size of both models')
    parser.add_argument(
        '--chunk-sizes',
        type=int,
        nargs='+',
        help='with --projection: one chunk size per method (default: '
        'logits 256, the materialised path\'s earlier default; fused 1024 '
        'twice, in blocks of 128 (the default) and 256)')
    parser.add_argument(
        '--block-size',
        type=int,
        default=128,
        help='block size of one worker (set by --block-sizes)')
    parser.add_argument(
        '--block-sizes',
        type=int,
        nargs='+',
        help='with --projection: the fused loss\'s block size per method '
        '(ignored for logits; default 128 each)')
    parser.add_argument(
        '--response-fraction',
        type=float,
        default=1.0,
        help='with --projection: fraction of the tokens that are scored')
    parser.add_argument(
        '--shapes',
        nargs='+',
        help='with --projection: TOKENSxVOCABxHIDDEN per shape (instead of '
        '--tokens, --vocabs and --hidden)')
    parser.add_argument(
        '--repeats',
        type=int,
        default=1,
        help='with --projection: interleaved rounds of all methods')
    parser.add_argument(
        '--worker',
        help='METHOD:VOCAB: measure one case in this process (the driver '
        'starts one fresh process per case with it)')
    args = parser.parse_args()
    if args.projection:
        if args.worker:
            method, vocab = args.worker.split(':')
            print(
                json.dumps(
                    measure_projection(method, args.tokens, int(vocab),
                                       args.hidden, args.chunk_size,
                                       args.block_size, args.threads,
                                       args.response_fraction)))
            return
        if args.methods is None:
            args.methods = ['logits', 'fused', 'fused']
            args.chunk_sizes = args.chunk_sizes or [256, 1024, 1024]
            args.block_sizes = args.block_sizes or [128, 128, 256]
        args.block_sizes = args.block_sizes or [128] * len(args.methods)
        if args.chunk_sizes is None or not len(args.methods) == len(
                args.chunk_sizes) == len(args.block_sizes) or set(
                    args.methods) - set(PROJECTION_METHODS):
            parser.error('--projection needs methods from '
                         f'{tuple(PROJECTION_METHODS)} and one --chunk-sizes '
                         'and --block-sizes entry per method')
        main_projection(args)
        return
    args.methods = args.methods or list(METHODS)
    if set(args.methods) - set(METHODS):
        parser.error(f'--methods must be from {tuple(METHODS)}')
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
            row = run_worker(command)
            print(
                f"| {vocab} | {METHODS[method]} | "
                f"{row['kept_mib']:.0f} MiB ({row['kept_mib'] / buffer:.1f}"
                f" buf) | {row['peak_mib']:.0f} MiB "
                f"({row['peak_mib'] / buffer:.1f} buf) | "
                f"{row['seconds']:.2f} |",
                flush=True)


if __name__ == '__main__':
    main()
