"""Instruction-following data for causal-LM distillation.

Reads local files that ``datasets`` loads (JSON, JSON Lines, Parquet)
holding records in one of three forms (:data:`RECORD_FORMS`):

* Dolly (``instruction``, ``context``, ``response``) or MiniLLM's data
  release for Dolly, S-NI and UnNI (``instruction``, ``input``, ``output``,
  where ``output`` may be a list of reference answers), rendered with the
  Alpaca-style prompt MiniLLM uses (:class:`InstructionExample`);
* ``prompt`` / ``completion``, the prompt taken verbatim
  (:class:`CompletionExample`);
* conversational ``messages``, rendered with the tokenizer's chat template,
  the assistant's last turn being the response (:class:`ChatExample`).

Records are tokenized so that only response tokens carry a label: prompt
and padding positions get ``IGNORE_INDEX``.
"""
from __future__ import annotations

import os.path as osp
import tempfile
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

IGNORE_INDEX = -100

#: How a text prompt and its response become tokens. ``'separate'``: the
#: prompt with the tokenizer's special tokens (a BOS for LLaMA), the
#: response on its own. ``'minillm'``: as MiniLLM's data processing, no
#: special tokens and the response cut from the encoding of prompt +
#: response. Conversations are tokenized as their chat template renders
#: them, whichever is chosen.
TOKENIZATIONS = ('separate', 'minillm')

#: The record forms a data file may hold, and their fields.
RECORD_FORMS = (
    "Dolly ('instruction', 'context', 'response')",
    "MiniLLM ('instruction', 'input', 'output')",
    "prompt/completion ('prompt', 'completion')",
    "conversational ('messages': role/content turns ending with the "
    "assistant's)",
)

#: File name endings and the ``datasets`` builder that reads them.
DATA_FILE_BUILDERS = {'.json': 'json', '.jsonl': 'json', '.parquet': 'parquet'}

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


class _TextPromptExample:
    """An example whose prompt is text (``self.prompt``) and whose response
    is its first reference followed by EOS."""

    def prompt_ids(self,
                   tokenizer,
                   tokenization: str = 'separate') -> list[int]:
        """The prompt's token ids, in training and generation alike."""
        return prompt_token_ids(tokenizer, self.prompt, tokenization)

    def response_ids(self,
                     tokenizer,
                     prompt_ids: list[int],
                     tokenization: str = 'separate') -> list[int]:
        """The response's token ids after ``prompt_ids``, EOS included."""
        if tokenization == 'minillm':
            response = tokenizer(
                self.prompt + self.references[0],
                add_special_tokens=False).input_ids[len(prompt_ids):]
        else:
            response = tokenizer(
                self.references[0], add_special_tokens=False).input_ids
        return response + [tokenizer.eos_token_id]


@dataclass(frozen=True)
class InstructionExample(_TextPromptExample):
    """A Dolly or MiniLLM record: an instruction with its optional context
    and reference answers.

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


@dataclass(frozen=True)
class CompletionExample(_TextPromptExample):
    """A prompt/completion record, the prompt used verbatim.

    Attributes:
        prompt (str): the text the model continues.
        references (tuple[str, ...]): the completion (training) and the
            reference(s) ROUGE-L compares with.
    """
    prompt: str
    references: tuple[str, ...]


def render_chat(tokenizer, messages: Sequence[dict],
                add_generation_prompt: bool) -> str:
    """``messages`` as the tokenizer's chat template writes them."""
    if not getattr(tokenizer, 'chat_template', None):
        raise ValueError(
            'conversational records need a tokenizer with a chat template; '
            f'{type(tokenizer).__name__} has none (set '
            'tokenizer.chat_template, or give the records as prompt/'
            'completion)')
    return tokenizer.apply_chat_template(
        list(messages),
        tokenize=False,
        add_generation_prompt=add_generation_prompt)


@dataclass(frozen=True)
class ChatExample:
    """A conversation whose last turn, the assistant's, is the response.

    The prompt is the conversation before that turn rendered by the chat
    template with the assistant's generation prompt; the response is the
    rest of the rendered conversation: the turn with whatever closes it in
    the template (its end-of-turn token), with no EOS added.

    Attributes:
        messages (tuple[dict, ...]): ``{'role', 'content'}`` turns.
    """
    messages: tuple[dict, ...]

    @property
    def references(self) -> tuple[str, ...]:
        return (self.messages[-1]['content'], )

    def prompt_ids(self,
                   tokenizer,
                   tokenization: str = 'separate') -> list[int]:
        """The rendered prompt's token ids (the template writes any special
        tokens; ``tokenization`` does not apply)."""
        check_tokenization(tokenization)
        return tokenizer(
            render_chat(tokenizer, self.messages[:-1], True),
            add_special_tokens=False).input_ids

    def response_ids(self,
                     tokenizer,
                     prompt_ids: list[int],
                     tokenization: str = 'separate') -> list[int]:
        """The token ids of the rendered conversation after the prompt."""
        ids = tokenizer(
            render_chat(tokenizer, self.messages, False),
            add_special_tokens=False).input_ids
        if ids[:len(prompt_ids)] != prompt_ids:
            raise ValueError(
                'the chat template renders this conversation so that its '
                'tokens do not start with those of its prompt (the turns '
                'before the last with the generation prompt); the response '
                f'cannot be told apart: {self.messages!r}')
        return ids[len(prompt_ids):]


Example = Union[InstructionExample, CompletionExample, ChatExample]


def _fields(record: dict) -> list[str]:
    """The fields a record sets (a column of a file is None in records that
    lack it)."""
    return [key for key, value in record.items() if value is not None]


def _references(value, field: str, where: str) -> tuple[str, ...]:
    references = tuple(value) if isinstance(value, list) else (value, )
    if not references or not all(isinstance(r, str) for r in references):
        raise ValueError(f'{where}: {field!r} must be a string or a '
                         'non-empty list of strings')
    return references


def _turns(turns, field: str, where: str) -> tuple[dict, ...]:
    if not isinstance(turns, list) or not all(
            isinstance(turn, dict) and isinstance(turn.get('role'), str)
            and 'content' in turn for turn in turns):
        raise ValueError(f'{where}: {field!r} must be a list of turns with '
                         "a 'role' and a 'content'")
    return tuple({k: v
                  for k, v in turn.items() if v is not None}
                 for turn in turns)


def _chat_example(messages: tuple[dict, ...], where: str) -> ChatExample:
    if len(messages) < 2 or messages[-1]['role'] != 'assistant':
        roles = [turn['role'] for turn in messages]
        raise ValueError(
            f'{where}: a conversation needs at least one turn before the '
            f"response, the assistant's last turn; got roles {roles}")
    if not isinstance(messages[-1]['content'], str):
        raise ValueError(f"{where}: the assistant's last turn must have "
                         'text content')
    return ChatExample(messages)


def parse_record(record: dict, where: str) -> Example:
    """The example a record holds, in whichever of :data:`RECORD_FORMS`.

    Args:
        record (dict): one record (fields set to None count as absent).
        where (str): names the record in errors.

    Returns:
        InstructionExample | CompletionExample | ChatExample.
    """
    if not isinstance(record, dict):
        raise ValueError(f'{where}: expected a JSON object, got '
                         f'{type(record).__name__}')
    fields = _fields(record)
    if 'messages' in fields:
        return _chat_example(
            _turns(record['messages'], 'messages', where), where)
    if 'prompt' in fields and 'completion' in fields:
        prompt, completion = record['prompt'], record['completion']
        if isinstance(prompt, list):
            # TRL's conversational prompt/completion: turns on both sides.
            return _chat_example(
                _turns(prompt, 'prompt', where) +
                _turns(completion, 'completion', where), where)
        if not isinstance(prompt, str):
            raise ValueError(f"{where}: 'prompt' must be a string or a list "
                             'of turns')
        return CompletionExample(
            prompt, _references(completion, 'completion', where))
    answer_key = 'response' if 'response' in fields else 'output'
    if 'instruction' in fields and answer_key in fields:
        context = record.get('context', record.get('input')) or ''
        return InstructionExample(
            record['instruction'], context,
            _references(record[answer_key], answer_key, where))
    raise ValueError(f'{where}: a record with fields {sorted(fields)} is in '
                     'none of the accepted forms: ' + '; '.join(RECORD_FORMS))


def _read_records(path: str, limit: Optional[int]) -> list[dict]:
    """The records of a file, read by ``datasets``."""
    ending = osp.splitext(path)[1].lower()
    builder = DATA_FILE_BUILDERS.get(ending)
    if builder is None:
        raise ValueError(
            f'{path}: expected a file that datasets reads, ending in '
            f'{", ".join(DATA_FILE_BUILDERS)}; got {ending or "no ending"!r}')
    if osp.getsize(path) == 0:
        raise ValueError(f'{path} holds no records')
    import datasets  # the data tools' dependency, not the trainers'

    # A cache of our own, removed after reading: a local file needs none.
    with tempfile.TemporaryDirectory() as cache_dir:
        try:
            table = datasets.load_dataset(
                builder,
                data_files=path,
                split='train',
                cache_dir=cache_dir,
                keep_in_memory=True)
        except datasets.exceptions.DatasetsError as error:
            cause = error.__cause__ or error
            raise ValueError(f'{path}: datasets cannot read it as {builder} '
                             f'({cause})') from error
        except ValueError as error:  # e.g. blank lines only: no split
            raise ValueError(f'{path} holds no records ({error})') from error
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    return table.to_list()


def load_instruction_file(path: str,
                          limit: Optional[int] = None) -> list[Example]:
    """Read instruction records from a JSON, JSON Lines or Parquet file.

    Args:
        path (str): the file; every record in one of :data:`RECORD_FORMS`.
        limit (int, optional): read at most this many records.

    Returns:
        list: the examples, in file order.
    """
    if limit is not None and (isinstance(limit, bool)
                              or not isinstance(limit, int) or limit < 1):
        raise ValueError(f'limit must be a number of records >= 1, got '
                         f'{limit!r} (leave it unset to read all of {path})')
    examples = [
        parse_record(record, f'{path}: record {number}')
        for number, record in enumerate(_read_records(path, limit), start=1)
    ]
    if not examples:
        raise ValueError(f'{path} holds no records')
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
    """The token ids a text prompt is given to the model as, in training
    and in generation alike (see :data:`TOKENIZATIONS`)."""
    check_tokenization(tokenization)
    return tokenizer(
        prompt, add_special_tokens=tokenization == 'separate').input_ids


def encode_example(example: Example,
                   tokenizer,
                   max_length: int,
                   max_prompt_length: int,
                   tokenization: str = 'separate'
                   ) -> Optional[dict[str, list[int]]]:
    """Token ids and labels of prompt + response.

    The prompt tokens are exactly those the model is given at generation
    time (``example.prompt_ids``). A text prompt's response is the first
    reference and EOS, tokenized on its own (``tokenization='separate'``)
    or cut from the encoding of prompt + response (``'minillm'``, as
    MiniLLM's data processing); a conversation's is its rendered last turn.

    Args:
        example: the record (:func:`parse_record`).
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
    prompt_ids = example.prompt_ids(tokenizer, tokenization)
    if len(prompt_ids) > max_prompt_length:
        return None
    response_ids = example.response_ids(
        tokenizer, prompt_ids, tokenization)[:max_length - len(prompt_ids)]
    return {
        'input_ids': prompt_ids + response_ids,
        'labels': [IGNORE_INDEX] * len(prompt_ids) + response_ids,
    }


class InstructionDataset(Dataset):
    """Tokenized instruction records for response-only training.

    Args:
        examples (Sequence): the records (:func:`load_instruction_file`).
        tokenizer: the (shared) tokenizer of teacher and student.
        max_length (int): cap on prompt + response tokens. Defaults to 512.
        max_prompt_length (int): longer prompts are dropped; the number is
            kept in ``num_dropped``. Defaults to 256.
        tokenization (str): ``'separate'`` (default) or ``'minillm'``, see
            :func:`encode_example`.
    """

    def __init__(self,
                 examples: Sequence[Example],
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
