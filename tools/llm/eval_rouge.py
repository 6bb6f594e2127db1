"""Generate greedily for held-out instructions and report ROUGE-L.

    python tools/llm/eval_rouge.py MODEL DATA.jsonl [DATA.jsonl ...] \\
        [--limit N] [--max-new-tokens 256] [--batch-size 8] \\
        [--dtype float32] [--output results.json]

MODEL is a local directory (e.g. the output of tools/llm/distill.py) or a
Hub name. Each DATA file is Dolly JSONL (``instruction``, ``context``,
``response``) or MiniLLM JSONL (``instruction``, ``input``, ``output``, with
``output`` a string or a list of references), e.g. the Dolly validation
split, S-NI and UnNI. Prints one ROUGE-L (percent) per file.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
from typing import Optional, Sequence

# loca_mm first: its compatibility fixes let torchvision, which transformers
# imports, load next to the CPU build of torch.
import loca_mm  # noqa: F401,I001
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from loca_mm.integrations.instruction_data import load_instruction_jsonl
from loca_mm.integrations.instruction_eval import evaluate_rouge_l

DTYPES = {
    'float32': torch.float32,
    'bfloat16': torch.bfloat16,
    'float16': torch.float16
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='local directory or Hub name')
    parser.add_argument('data', nargs='+', help='held-out JSONL files')
    parser.add_argument(
        '--limit', type=int, help='evaluate the first N records of each file')
    parser.add_argument('--max-new-tokens', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--dtype', choices=tuple(DTYPES), default='float32')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='default: cuda if available, else cpu')
    parser.add_argument(
        '--output', help='write scores and generated responses as JSON')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    args = parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=DTYPES[args.dtype]).to(args.device)
    scores, details = {}, {}
    for path in args.data:
        examples = load_instruction_jsonl(path, args.limit)
        score, responses = evaluate_rouge_l(model, tokenizer, examples,
                                            args.max_new_tokens,
                                            args.batch_size)
        name = osp.splitext(osp.basename(path))[0]
        scores[path] = score
        details[path] = {
            'rouge_l': score,
            'num_examples': len(examples),
            'responses': responses
        }
        print(f'{name}: ROUGE-L {score:.2f} ({len(examples)} examples)')
    if args.output:
        with open(args.output, 'w', encoding='utf-8') as f:
            json.dump({'model': args.model, 'results': details}, f, indent=1)
    return scores


if __name__ == '__main__':
    main()
