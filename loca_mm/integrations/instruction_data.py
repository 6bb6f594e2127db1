"""Instruction-following data for causal-LM distillation (Dolly format).

Reads JSONL records in the format of databricks-dolly-15k
(``instruction``, ``context``, ``response``) or of MiniLLM's data release
for Dolly, S-NI and UnNI (``instruction``, ``input``, ``output``, where
``output`` may be a list of reference answers), renders them with the
Alpaca-style prompt MiniLLM uses, and tokenizes them so that only response
tokens carry a label: prompt and padding positions get ``IGNORE_INDEX``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

IGNORE_INDEX = -100

#: How prompt and response become tokens. ``'separate'``: the prompt with
#: the tokenizer's special tokens (a BOS for LLaMA), the response on its
#: own. ``'minillm'``: as MiniLLM's data processing, no special tokens and
#: the response cut from the encoding of prompt + response.
TOKENIZATIONS = ('separate', 'minillm')

PROMPT_WITHOUT_CONTEXT = (
    'Below is an instruction that describes a task. Write a response that '
    'appropriately completes the request.\n\n'
    '### Instruction:\n{instruction}\n\n### Response:\n')
PROMPT_WITH_CONTEXT = (
    'Below is an instruction that describes a task, paired with an input '
    'that provides further context. Write a response that appropriately '
    'completes the request.\n\n'
    '### Instruction:\n{instruction}\n\n### Input:\n{context}\n\n'
    '### Response:\n')


@dataclass(frozen=True)
class InstructionExample:
    """One instruction with its optional context and reference answers.

    Attributes:
        instruction (str): the task.
        context (str): extra input for the task ('' when there is none).
        references (tuple[str, ...]): reference responses; training uses the
            first, ROUGE-L takes the best match over all.
    """
    instruction: str
    context: str
    references: tuple[str, ...]

    @property
    def prompt(self) -> str:
        """The prompt the model continues, ending before the response."""
        if self.context:
            return PROMPT_WITH_CONTEXT.format(
                instruction=self.instruction, context=self.context)
        return PROMPT_WITHOUT_CONTEXT.format(instruction=self.instruction)


def _parse_record(record: dict, where: str) -> InstructionExample:
    if not isinstance(record, dict):
        raise ValueError(f'{where}: expected a JSON object, got '
                         f'{type(record).__name__}')
    answer_key = 'response' if 'response' in record else 'output'
    missing = [key for key in ('instruction', answer_key) if key not in record]
    if missing:
        raise ValueError(
            f'{where}: missing field(s) {missing}; expected Dolly records '
            "('instruction', 'context', 'response') or MiniLLM records "
            "('instruction', 'input', 'output')")
    answers = record[answer_key]
    references = tuple(answers) if isinstance(answers, list) else (answers, )
    if not references or not all(isinstance(r, str) for r in references):
        raise ValueError(f'{where}: {answer_key!r} must be a string or a '
                         'non-empty list of strings')
    context = record.get('context', record.get('input', '')) or ''
    return InstructionExample(record['instruction'], context, references)


def load_instruction_jsonl(path: str,
                           limit: Optional[int] = None
                           ) -> list[InstructionExample]:
    """Read instruction records from a JSONL file.

    Args:
        path (str): file with one JSON object per line (blank lines are
            skipped).
        limit (int, optional): read at most this many records.

    Returns:
        list[InstructionExample]: the records, in file order.
    """
    if limit is not None and (isinstance(limit, bool)
                              or not isinstance(limit, int) or limit < 1):
        raise ValueError(f'limit must be a number of records >= 1, got '
                         f'{limit!r} (leave it unset to read all of {path})')
    examples = []
    with open(path, encoding='utf-8') as f:
        for line_number, line in enumerate(f, start=1):
            if limit is not None and len(examples) >= limit:
                break
            if not line.strip():
                continue
            where = f'{path}:{line_number}'
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f'{where}: not valid JSON ({error})') from None
            examples.append(_parse_record(record, where))
    if not examples:
        raise ValueError(f'{path} holds no instruction records')
    return examples


def check_tokenization(tokenization: str) -> None:
    """Raise ValueError unless ``tokenization`` is one of
    :data:`TOKENIZATIONS`."""
    if tokenization not in TOKENIZATIONS:
        raise ValueError(f'tokenization must be one of {TOKENIZATIONS}, got '
                         f'{tokenization!r}')


def prompt_token_ids(tokenizer,
                     prompt: str,
                     tokenization: str = 'separate') -> list[int]:
    """The token ids a prompt is given to the model as, in training and in
    generation alike (see :data:`TOKENIZATIONS`)."""
    check_tokenization(tokenization)
    return tokenizer(
        prompt, add_special_tokens=tokenization == 'separate').input_ids


def encode_example(example: InstructionExample,
                   tokenizer,
                   max_length: int,
                   max_prompt_length: int,
                   tokenization: str = 'separate'
                   ) -> Optional[dict[str, list[int]]]:
    """Token ids and labels of prompt + first reference + EOS.

    The prompt tokens are exactly those the model is given at generation
    time (:func:`prompt_token_ids`). With ``tokenization='separate'`` the
    response is tokenized on its own; with ``'minillm'`` it is the part of
    the encoding of prompt + response after the prompt's tokens, as in
    MiniLLM's data processing.

    Args:
        example (InstructionExample): the record.
        tokenizer: a Hugging Face tokenizer with an EOS token.
        max_length (int): cap on prompt + response tokens; the response is
            cut to fit.
        max_prompt_length (int): records with longer prompts are dropped
            (returns None), as in MiniLLM's preprocessing.
        tokenization (str): ``'separate'`` (default) or ``'minillm'``.

    Returns:
        dict | None: ``input_ids`` and ``labels`` (``IGNORE_INDEX`` on the
        prompt), or None for a prompt that is too long.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError('the tokenizer has no EOS token; the student must '
                         'learn where a response ends')
    prompt_ids = prompt_token_ids(tokenizer, example.prompt, tokenization)
    if len(prompt_ids) > max_prompt_length:
        return None
    if tokenization == 'minillm':
        response_ids = tokenizer(
            example.prompt + example.references[0],
            add_special_tokens=False).input_ids[len(prompt_ids):]
    else:
        response_ids = tokenizer(
            example.references[0], add_special_tokens=False).input_ids
    response_ids = (response_ids + [tokenizer.eos_token_id])[:max_length -
                                                             len(prompt_ids)]
    return {
        'input_ids': prompt_ids + response_ids,
        'labels': [IGNORE_INDEX] * len(prompt_ids) + response_ids,
    }


class InstructionDataset(Dataset):
    """Tokenized instruction records for response-only training.

    Args:
        examples (Sequence[InstructionExample]): the records.
        tokenizer: the (shared) tokenizer of teacher and student.
        max_length (int): cap on prompt + response tokens. Defaults to 512.
        max_prompt_length (int): longer prompts are dropped; the number is
            kept in ``num_dropped``. Defaults to 256.
        tokenization (str): ``'separate'`` (default) or ``'minillm'``, see
            :func:`encode_example`.
    """

    def __init__(self,
                 examples: Sequence[InstructionExample],
                 tokenizer,
                 max_length: int = 512,
                 max_prompt_length: int = 256,
                 tokenization: str = 'separate') -> None:
        if not 0 < max_prompt_length < max_length:
            raise ValueError('need 0 < max_prompt_length < max_length, got '
                             f'max_prompt_length={max_prompt_length}, '
                             f'max_length={max_length}')
        encoded = [
            encode_example(example, tokenizer, max_length, max_prompt_length,
                           tokenization) for example in examples
        ]
        self.items = [item for item in encoded if item is not None]
        self.num_dropped = len(encoded) - len(self.items)
        if not self.items:
            raise ValueError(
                f'every one of the {len(encoded)} prompts is longer than '
                f'max_prompt_length={max_prompt_length} tokens')

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


class ResponseOnlyCollator:
    """Pads a list of encoded records on the right into a batch.

    Padding gets ``attention_mask`` 0 and label ``IGNORE_INDEX``, so only
    response tokens (including their EOS) enter the loss.

    Args:
        pad_token_id (int): id written at padded positions.
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[dict[str,
                                            list[int]]]) -> dict[str, Tensor]:
        length = max(len(item['input_ids']) for item in items)
        batch = {
            'input_ids':
            torch.full((len(items), length),
                       self.pad_token_id,
                       dtype=torch.long),
            'attention_mask':
            torch.zeros(len(items), length, dtype=torch.long),
            'labels':
            torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long),
        }
        for row, item in enumerate(items):
            size = len(item['input_ids'])
            batch['input_ids'][row, :size] = torch.tensor(item['input_ids'])
            batch['attention_mask'][row, :size] = 1
            batch['labels'][row, :size] = torch.tensor(item['labels'])
        return batch
