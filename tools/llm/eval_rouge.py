"""Generate for held-out instructions and report ROUGE-L.

    python tools/llm/eval_rouge.py MODEL DATA.jsonl [DATA.jsonl ...] \\
        [--limit N] [--max-new-tokens 256] [--batch-size 8] \\
        [--do-sample --seeds 10 20 30 40 50] [--tokenization separate] \\
        [--dtype float32] [--output results.json]

MODEL is a local directory (e.g. the output of tools/llm/distill.py or one
of its checkpoints) or a Hub name. For a model distill.py saved, prompts
are tokenized as in its training (``distill_args.json`` beside it); an
explicit ``--tokenization`` that differs is used, with a warning. Each DATA
file is JSON, JSON Lines or Parquet of Dolly records (``instruction``,
``context``, ``response``), MiniLLM records (``instruction``, ``input``,
``output``, with ``output`` a string or a list of references; e.g. the Dolly
validation split, S-NI and UnNI), ``prompt`` / ``completion`` records or
conversational ``messages`` (the prompt rendered with the model's chat
template, the assistant's last turn the reference).
Greedy by default; ``--do-sample`` samples as MiniLLM does (temperature 1,
top_k 0, top_p 1) once per seed and reports the mean and standard
deviation. Prints one ROUGE-L (percent) per file.
"""
from __future__ import annotations

import argparse
import warnings
from typing import Optional, Sequence

# loca_mm first: its compatibility fixes let torchvision, which transformers
# imports, load next to the CPU build of torch.
import loca_mm  # noqa: F401,I001
import torch

from loca_mm.integrations.distill_run import read_run_args
from loca_mm.integrations.hf_models import (DTYPES, load_causal_lm,
                                            load_tokenizer)
from loca_mm.integrations.instruction_data import TOKENIZATIONS
from loca_mm.integrations.instruction_eval import run_rouge_evaluation

MINILLM_SEEDS = [10, 20, 30, 40, 50]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f'must be >= 1, got {value} (leave --limit out to evaluate every '
            'record)')
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='local directory or Hub name')
    parser.add_argument(
        'data', nargs='+', help='held-out .json, .jsonl or .parquet files')
    parser.add_argument(
        '--limit',
        type=positive_int,
        help='evaluate the first N records of each file')
    parser.add_argument('--max-new-tokens', type=positive_int, default=256)
    parser.add_argument('--batch-size', type=positive_int, default=8)
    parser.add_argument(
        '--do-sample',
        '--do_sample',
        action='store_true',
        help='sample (temperature 1, top_k 0, top_p 1) once per seed, as '
        'MiniLLM evaluates; default: greedy')
    parser.add_argument(
        '--seeds',
        type=int,
        nargs='+',
        help=f'seeds of --do-sample (default: MiniLLM\'s {MINILLM_SEEDS})')
    parser.add_argument(
        '--tokenization',
        choices=TOKENIZATIONS,
        help="how prompts become tokens ('minillm': no BOS); default: what "
        "the model was trained with (its distill_args.json), else 'separate'")
    parser.add_argument('--dtype', choices=tuple(DTYPES), default='float32')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='default: cuda if available, else cpu')
    parser.add_argument(
        '--output',
        help='write scores and generated responses as JSON (after each '
        'file); must not exist')
    args = parser.parse_args(argv)
    if args.seeds is not None and not args.do_sample:
        parser.error('--seeds needs --do-sample')
    if args.do_sample and args.seeds is None:
        args.seeds = MINILLM_SEEDS
    return args


def resolve_tokenization(model: str, given: Optional[str]) -> str:
    """``--tokenization`` if given, else the one the model was trained with
    (:func:`read_run_args`), else ``'separate'``; a given value that differs
    from the training's is used with a warning."""
    run_args, source = read_run_args(model)
    trained = None if run_args is None else run_args['tokenization']
    if given is None:
        chosen = trained or 'separate'
        print(f'tokenization: {chosen} ('
              f'{"as trained, " + source if trained else "default"})')
        return chosen
    if trained is not None and given != trained:
        warnings.warn(
            f'--tokenization {given} differs from {trained!r}, which the '
            f'model was trained with ({source}); evaluating with {given}',
            stacklevel=2)
    return given


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    args = parse_args(argv)
    args.tokenization = resolve_tokenization(args.model, args.tokenization)
    tokenizer = load_tokenizer(args.model)
    model = load_causal_lm(args.model, args.dtype).to(args.device)
    return run_rouge_evaluation(
        model,
        tokenizer,
        args.data,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seeds=args.seeds if args.do_sample else None,
        tokenization=args.tokenization,
        output=args.output,
        model_name=args.model)


if __name__ == '__main__':
    main()
