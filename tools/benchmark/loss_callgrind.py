"""What one loss call costs the processor, counted rather than timed.

    python tools/benchmark/loss_callgrind.py [--shape 64x100] [--calls 200]
        [--warmup 50] [--losses NAME ...] [--jobs 2] [--out FILE.json]

Runs forward + backward of each loss of ``loss_speed.py``'s zoo (eager, in
training mode) ``--calls`` times under valgrind's callgrind, with its cache
and branch simulation, in a process of its own, and reports per call: the
instructions executed, the level-1 instruction and data cache misses and the
mispredicted branches. The counts are the same from run to run whatever
else the machine does, unlike times on a shared machine; they explain a
time ratio rather than replace it (a missed instruction fetch or branch
costs many instructions' time). Only the timed calls are counted: the
import, the set-up and ``--warmup`` calls run with the instrumentation off.
Needs valgrind (``apt install valgrind``); one loss takes a minute or two,
``--jobs`` of them at once (the counts do not depend on it).
"""
import argparse
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

DEFAULT_LOSSES = ['mdistiller kd_loss', 'LoCa', 'mdistiller dkd_loss',
                  'DKD+LoCa']
# callgrind's summary lines (on stderr) and the names they are reported by.
COUNTERS = {
    'I   refs': 'instructions',
    'I1  misses': 'instruction_cache_misses',
    'D1  misses': 'data_cache_misses',
    'Mispredicts': 'mispredicted_branches',
}
SUMMARY_LINE = re.compile(r'^==\d+== (' + '|'.join(map(re.escape, COUNTERS)) +
                          r'):\s+([\d,]+)')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--shape', default='64x100', help='(N, C) as NxC')
    parser.add_argument('--calls', type=int, default=200)
    parser.add_argument('--warmup', type=int, default=50)
    parser.add_argument(
        '--losses',
        nargs='+',
        default=DEFAULT_LOSSES,
        help="names in loss_speed.py's zoo")
    parser.add_argument(
        '--jobs', type=int, default=2, help='losses counted at once')
    parser.add_argument(
        '--out', default='outputs/benchmark_loss_callgrind.json')
    parser.add_argument(
        '--force', action='store_true', help='overwrite --out if it exists')
    # Internal: the process that valgrind runs, one loss.
    parser.add_argument('--child', help=argparse.SUPPRESS)
    return parser.parse_args()


def _instrumentation(on: bool) -> None:
    """Switch callgrind's counting for this process on or off; the command
    returns once callgrind has done it."""
    subprocess.run(
        ['callgrind_control', '-i', 'on' if on else 'off',
         str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL)


def run_child(name: str, shape: tuple, calls: int, warmup: int) -> None:
    """The counted process: ``calls`` forward + backward of loss ``name``."""
    import loss_speed  # first: it imports loca_mm before the stack
    import torch
    torch.set_num_threads(1)
    loss = loss_speed.loss_zoo(with_compiled=False)[name]
    preds_S, preds_T, labels = loss_speed.random_inputs(
        shape, torch.device('cpu'))
    for _ in range(warmup):
        loss_speed.fwd_bwd(loss, preds_S, preds_T, labels)
    _instrumentation(True)
    for _ in range(calls):
        loss_speed.fwd_bwd(loss, preds_S, preds_T, labels)
    _instrumentation(False)


def count(name: str, args: argparse.Namespace) -> Dict[str, float]:
    """Per-call counts of loss ``name``, from a callgrind run of this file."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            'valgrind', '--tool=callgrind', '--cache-sim=yes',
            '--branch-sim=yes', '--instr-atstart=no',
            f'--callgrind-out-file={osp.join(tmp, "callgrind.out")}',
            sys.executable,
            osp.abspath(__file__), '--child', name, '--shape', args.shape,
            '--calls',
            str(args.calls), '--warmup',
            str(args.warmup)
        ]
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f'callgrind run of {name!r} failed '
                           f'({done.returncode}):\n{done.stderr[-3000:]}')
    counts = {}
    for line in done.stderr.splitlines():
        match = SUMMARY_LINE.match(line)
        if match:
            counts[COUNTERS[match.group(1)]] = int(
                match.group(2).replace(',', '')) / args.calls
    missing = set(COUNTERS.values()) - set(counts)
    if missing:
        raise RuntimeError(f'callgrind printed no {sorted(missing)} for '
                           f'{name!r}:\n{done.stderr[-3000:]}')
    return counts


def main() -> None:
    args = parse_args()
    # Here, not at the top: loss_speed imports torch and the stack, which
    # --help need not wait for.
    from loss_speed import loss_zoo, parse_shape, source_version
    if args.child:
        run_child(args.child, parse_shape(args.shape), args.calls,
                  args.warmup)
        return
    for tool in ('valgrind', 'callgrind_control'):
        if shutil.which(tool) is None:
            raise SystemExit(f'{tool} not found: this benchmark needs '
                             'valgrind (apt install valgrind)')
    if osp.exists(args.out) and not args.force:
        raise SystemExit(f'{args.out} exists; pass --force to overwrite it')
    # Before the first valgrind run, not a minute into it.
    zoo = list(loss_zoo(with_compiled=False))
    unknown = [name for name in args.losses if name not in zoo]
    if unknown:
        raise SystemExit(f'unknown losses {unknown}; the zoo has {zoo}')
    print(f'counting {len(args.losses)} losses, {args.calls} calls each, '
          f'{args.jobs} at a time ...', flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        counted = pool.map(lambda name: count(name, args), args.losses)
        results: List[dict] = [
            dict(loss=name, **counts)
            for name, counts in zip(args.losses, counted)
        ]
    baseline = results[0]
    print(f'\nper forward + backward at (N, C) = {parse_shape(args.shape)}, '
          f'against {baseline["loss"]}:')
    for entry in results:
        cells = ', '.join(
            f'{key.replace("_", " ")} {entry[key] / 1e3:.1f}k '
            f'({entry[key] / baseline[key]:.2f}x)'
            for key in COUNTERS.values())
        print(f'  {entry["loss"]:>30}: {cells}')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(
            dict(
                source=source_version(),
                shape=list(parse_shape(args.shape)),
                calls=args.calls,
                losses=results),
            f,
            indent=2)
    print(f'\nwritten to {args.out}')


if __name__ == '__main__':
    main()
