"""A few steps of LoCaDistillTrainer under DeepSpeed ZeRO-3 on CPU processes.

    DS_ACCELERATOR=cpu python tools/benchmark/llm_zero3.py [--processes 2] \\
        [--steps 3] [--stage 3]

Starts ``--processes`` workers (gloo, DeepSpeed's CPU accelerator), each
training a tiny random GPT-2 student against a tiny random GPT-2 teacher
with ``LoCaDistillTrainer`` and a ZeRO config of ``--stage``. Each worker
prints, as JSON: the teacher's parameters in all and those its rank holds
(ZeRO-3 partitions them; stage 0 keeps them whole), the same for the
student, whether the fused loss was used (and why not) and the loss of each
logged step. Needs ``deepspeed``; its first run on a machine compiles
DeepSpeed's shared-memory communication op (cached after that in
``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tiny_gpt2(seed: int, vocab: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab, n_positions=64, n_embd=64, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config)


def held_parameters(model) -> tuple[int, int]:
    """(parameters of the model, parameters this rank holds)."""
    total = held = 0
    for param in model.parameters():
        # ZeRO-3 replaces a partitioned parameter's data by an empty tensor
        # and keeps this rank's part in ds_tensor.
        full = getattr(param, 'ds_numel', param.numel())
        part = getattr(param, 'ds_tensor', None)
        total += full
        held += full if part is None else part.numel()
    return total, held


def worker(args) -> None:
    import torch

    import loca_mm  # noqa: F401  (before transformers: its CPU fixes)
    from loca_mm.integrations.transformers import (LoCaDistillArguments,
                                                   LoCaDistillTrainer)
    torch.set_num_threads(1)
    vocab, length = 97, 24
    generator = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(16):
        ids = torch.randint(0, vocab, (length, ), generator=generator)
        labels = ids.clone()
        labels[:length // 2] = -100  # the prompt
        rows.append({
            'input_ids': ids,
            'attention_mask': torch.ones(length, dtype=torch.long),
            'labels': labels
        })
    zero = {'stage': args.stage}
    if args.stage == 3:
        zero['stage3_param_persistence_threshold'] = 0  # shard every tensor
    with tempfile.TemporaryDirectory() as output_dir:
        training = LoCaDistillArguments(
            output_dir=output_dir,
            deepspeed={
                'zero_optimization': zero,
                'train_micro_batch_size_per_gpu': 'auto',
                'gradient_accumulation_steps': 'auto',
                'train_batch_size': 'auto',
                'gradient_clipping': 'auto',
            },
            per_device_train_batch_size=2,
            max_steps=args.steps,
            logging_steps=1,
            learning_rate=1e-3,
            save_strategy='no',
            report_to='none',
            ddp_backend='gloo',
            disable_tqdm=True)
        # transformers 5.24 fills in DeepSpeed's global batch size before it
        # knows the processes (for one), which DeepSpeed then refuses
        # against the world size: set it for all of them.
        training.hf_deepspeed_config.config['train_batch_size'] = (
            training.per_device_train_batch_size *
            training.gradient_accumulation_steps *
            int(os.environ['WORLD_SIZE']))
        trainer = LoCaDistillTrainer(
            model=tiny_gpt2(0, vocab),
            teacher_model=tiny_gpt2(1, vocab),
            args=training,
            train_dataset=rows)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        teacher_total, teacher_held = held_parameters(trainer.teacher_model)
        student_total, student_held = held_parameters(trainer.model_wrapped)
        print(
            json.dumps({
                'rank': int(os.environ['RANK']),
                'stage': args.stage,
                'teacher_parameters': teacher_total,
                'teacher_parameters_held': teacher_held,
                'student_parameters': student_total,
                'student_parameters_held': student_held,
                'fused_off_reason': trainer.fused_off_reason,
                'losses': [
                    entry['loss'] for entry in trainer.state.log_history
                    if 'loss' in entry
                ],
                'train_seconds': seconds,
            }),
            flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--processes', type=int, default=2)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--stage', type=int, default=3, choices=(0, 1, 2, 3))
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    port = str(free_port())
    workers = []
    for rank in range(args.processes):
        env = {
            **os.environ, 'DS_ACCELERATOR':
            os.environ.get('DS_ACCELERATOR', 'cpu'),
            'RANK': str(rank),
            'LOCAL_RANK': str(rank),
            'WORLD_SIZE': str(args.processes),
            'LOCAL_WORLD_SIZE': str(args.processes),
            'MASTER_ADDR': '127.0.0.1',
            'MASTER_PORT': port
        }
        workers.append(
            subprocess.Popen([
                sys.executable, __file__, '--worker', '--steps',
                str(args.steps), '--stage',
                str(args.stage)
            ],
                             env=env,
                             stdout=subprocess.PIPE,
                             text=True))
    failed = False
    for rank, process in enumerate(workers):
        output, _ = process.communicate()
        lines = [line for line in output.splitlines() if line.startswith('{')]
        if process.returncode or not lines:
            failed = True
            print(f'rank {rank}: exit status {process.returncode}')
        else:
            print(lines[-1])
    if failed:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
