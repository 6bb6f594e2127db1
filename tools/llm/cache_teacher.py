"""Run a teacher once over a training file and store its top-k outputs per
response token, for ``tools/llm/distill.py --teacher_cache``.

    python tools/llm/cache_teacher.py --teacher TEACHER \\
        --train_file dolly_train.jsonl --output cache.parquet \\
        [--top_k 32] [--tau 1.0] [--max_length 512] \\
        [--max_prompt_length 256] [--tokenization separate] \\
        [--teacher_dtype float32] [--device cuda]

The records are read and tokenized as distill.py does (Dolly, MiniLLM,
prompt/completion or messages; see docs/llm.md). OUTPUT (``.parquet``,
``.jsonl`` or ``.json``) holds per record its tokens and, per response token,
the top-k logits and ids, the label's logit and the log-sum-exp of the whole
row at ``--tau`` (the temperature the students will train at). The file
format and LoCa's rule on the sparse teacher are in
``loca_mm.integrations.teacher_cache`` and ``loca_mm.functional.sparse``.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

# loca_mm first: its compatibility fixes let torchvision, which transformers
# imports, load next to the CPU build of torch.
import loca_mm  # noqa: F401,I001
import torch

from loca_mm.integrations.hf_models import (DTYPES, load_causal_lm,
                                            load_tokenizer)
from loca_mm.integrations.instruction_data import (TOKENIZATIONS,
                                                   InstructionDataset,
                                                   load_instruction_file)
from loca_mm.integrations.teacher_cache import (cache_record,
                                               write_teacher_cache)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=' '.join(__doc__.split('\n\n')[0].split()))
    parser.add_argument('--teacher', required=True,
                        help='teacher causal LM: local directory or Hub name')
    parser.add_argument('--train_file', required=True,
                        help='training records (.json, .jsonl, .parquet)')
    parser.add_argument('--output', required=True,
                        help='the cache file (.parquet, .jsonl or .json)')
    parser.add_argument('--top_k', type=int, default=32,
                        help='classes kept per token (>= 2)')
    parser.add_argument('--tau', type=float, default=1.0,
                        help='temperature of the stored log-sum-exp: the '
                        'students train at this --tau')
    parser.add_argument('--max_length', type=int, default=512,
                        help='cap on prompt + response tokens')
    parser.add_argument('--max_prompt_length', type=int, default=256,
                        help='records with longer prompts are dropped')
    parser.add_argument('--tokenization', default='separate',
                        choices=TOKENIZATIONS,
                        help='as distill.py --tokenization')
    parser.add_argument('--teacher_dtype', default='float32',
                        choices=tuple(DTYPES),
                        help='precision of the teacher')
    parser.add_argument('--device', default=None,
                        help='where the teacher runs (default: cuda when '
                        'available, else cpu)')
    args = parser.parse_args(argv)
    if args.top_k < 2:
        parser.error(f'--top_k must be >= 2 (the largest non-target class '
                     f'must be kept), got {args.top_k}')
    if not args.tau > 0:
        parser.error(f'--tau must be > 0, got {args.tau}')
    return args


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    examples = load_instruction_file(args.train_file)
    tokenizer = load_tokenizer(args.teacher)
    dataset = InstructionDataset(examples, tokenizer, args.max_length,
                                 args.max_prompt_length, args.tokenization)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    teacher = load_causal_lm(args.teacher, args.teacher_dtype).to(
        device).eval()
    rows = [
        cache_record(teacher, item['input_ids'], item['labels'], args.top_k,
                     args.tau) for item in dataset
    ]
    write_teacher_cache(rows, args.output)
    tokens = sum(len(row['teacher_label_logit']) for row in rows)
    print(f'{args.output}: {len(rows)} records, {tokens} response tokens, '
          f'top {args.top_k} classes each')
    return args.output


if __name__ == '__main__':
    main()
