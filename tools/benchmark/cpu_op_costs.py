"""What one (N, C) pass of each elementwise operator that the losses use
costs on this machine, one thread, process CPU time.

    python tools/benchmark/cpu_op_costs.py [--shape 256x1000] [--rounds 7]

The eager losses are a handful of such passes each; this says which ones
are dear here. On the 2-core CPU of docs/benchmarks.md the selections
(``torch.where``) and the comparisons that make their masks cost about six
times an ``add``, while inside ``torch.compile`` they cost nothing extra.
"""
import argparse
import statistics
import time

import torch


def cpu_microseconds(call, rounds: int, calls: int = 200) -> float:
    """Median over ``rounds`` of the mean CPU time of ``calls`` calls."""
    for _ in range(5):
        call()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            call()
        times.append((time.process_time() - start) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--shape', default='256x1000')
    parser.add_argument('--rounds', type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, classes = map(int, args.shape.split('x'))
    x = torch.randn(rows, classes)
    row = torch.randn(rows, 1)
    mask = torch.rand(rows, classes) < 0.01
    labels = torch.randint(0, classes, (rows, 1))
    class_ids = torch.arange(classes)
    ops = {
        'x + row': lambda: x + row,
        'x * x': lambda: x * x,
        'x.exp()': lambda: x.exp(),
        'log_softmax(x)': lambda: torch.log_softmax(x, -1),
        'x == 0': lambda: x == 0,
        'class_ids == labels': lambda: class_ids == labels,
        'where(mask, 0.0, x)': lambda: torch.where(mask, 0.0, x),
        'where(mask, row, x)': lambda: torch.where(mask, row, x),
        'x.scatter(-1, labels, -inf)':
        lambda: x.scatter(-1, labels, float('-inf')),
    }
    base = None
    print(f'{rows}x{classes}, one thread, CPU microseconds per call:')
    for name, call in ops.items():
        microseconds = cpu_microseconds(call, args.rounds)
        base = base or microseconds
        print(f'  {name:30s} {microseconds:9.1f}  ({microseconds / base:.1f}x '
              'the add)')


if __name__ == '__main__':
    main()
