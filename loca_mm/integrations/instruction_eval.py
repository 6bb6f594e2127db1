"""Generation and ROUGE-L, as the instruction-following tables report.

The score follows the S-NI / MiniLLM evaluation: Google's ``rouge-score``
package, ROUGE-L F-measure with Porter stemming, the best match over an
example's references, averaged over examples and multiplied by 100.
Responses are generated greedily, or sampled as MiniLLM's evaluation does
(temperature 1, no top-k or top-p truncation) with one score per seed.
"""
from __future__ import annotations

import contextlib
import json
import os
import os.path as osp
import statistics
from typing import Optional, Sequence

import torch
from rouge_score import rouge_scorer

from .hf_models import check_length_fits
from .instruction_data import (Example, check_tokenization,
                               load_instruction_file, prompt_token_ids)

#: MiniLLM's sampling: the model's own distribution, untruncated.
SAMPLING = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)


def rouge_l(predictions: Sequence[str],
            references: Sequence[Sequence[str]]) -> float:
    """Mean ROUGE-L F-measure (0..100), best over each example's references.

    Args:
        predictions (Sequence[str]): one generated response per example.
        references (Sequence[Sequence[str]]): the reference responses of
            each example (at least one).

    Returns:
        float: the score in percent.
    """
    if len(predictions) != len(references):
        raise ValueError(f'{len(predictions)} predictions for '
                         f'{len(references)} reference sets')
    if not predictions:
        raise ValueError('ROUGE-L of an empty evaluation set is undefined')
    scorer = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)
    total = 0.0
    for index, (prediction, refs) in enumerate(zip(predictions, references)):
        if not refs:
            raise ValueError(f'example {index} has no reference response')
        # RougeScorer.score takes (target, prediction).
        total += max(
            scorer.score(ref, prediction)['rougeL'].fmeasure for ref in refs)
    return 100.0 * total / len(predictions)


def _pad_left(rows: Sequence[Sequence[int]],
              pad_token_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of rows padded on the left."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            input_ids[index, width - len(row):] = torch.tensor(row)
            attention_mask[index, width - len(row):] = 1
    return {'input_ids': input_ids, 'attention_mask': attention_mask}


def _pad_token_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is None:
        raise ValueError('the tokenizer has neither a pad nor an EOS token')
    # Padded positions are masked out; EOS only fills them (as GPT-2 does).
    return tokenizer.eos_token_id


@torch.no_grad()
def generate_responses(model,
                       tokenizer,
                       prompts: Sequence[str | Sequence[int]],
                       max_new_tokens: int = 256,
                       batch_size: int = 8,
                       seed: Optional[int] = None,
                       tokenization: str = 'separate') -> list[str]:
    """Continuations of the prompts, without the prompts.

    Greedy when ``seed`` is None; otherwise sampled with :data:`SAMPLING`
    from torch's generator seeded with ``seed``, so that a seed gives the
    same responses again (for the same batch size and device). The random
    state outside is left as it was (a training run that evaluates keeps
    its own random stream).
    Prompts are padded on the left so that every row's continuation starts
    right after its own last prompt token.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer (a pad token, or EOS to pad with).
        prompts (Sequence[str | Sequence[int]]): the prompts, as text
            (tokenized as ``tokenization`` says) or as token ids.
        max_new_tokens (int): generation length cap. Defaults to 256.
        batch_size (int): prompts per ``generate`` call. Defaults to 8.
        seed (int, optional): sample with this seed; None: greedy.
        tokenization (str): how prompts become tokens, as in training
            (:data:`~.instruction_data.TOKENIZATIONS`).

    Returns:
        list[str]: the decoded responses, special tokens removed, stripped.
    """
    pad_token_id = _pad_token_id(tokenizer)
    decoding = dict(do_sample=False) if seed is None else SAMPLING
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    responses = []
    random_state = contextlib.nullcontext()
    if seed is not None:
        random_state = torch.random.fork_rng(
            devices=[device] if device.type == 'cuda' else [])
    try:
        with random_state:
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_size):
                rows = [
                    prompt_token_ids(tokenizer, prompt, tokenization)
                    if isinstance(prompt, str) else prompt
                    for prompt in prompts[start:start + batch_size]
                ]
                batch = {
                    key: value.to(device)
                    for key, value in _pad_left(rows, pad_token_id).items()
                }
                output = model.generate(
                    **batch,
                    **decoding,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad_token_id,
                    eos_token_id=tokenizer.eos_token_id)
                new_tokens = output[:, batch['input_ids'].shape[1]:]
                responses.extend(text.strip()
                                 for text in tokenizer.batch_decode(
                                     new_tokens, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return responses


def evaluate_rouge_l(model,
                     tokenizer,
                     examples: Sequence[Example],
                     max_new_tokens: int = 256,
                     batch_size: int = 8,
                     seed: Optional[int] = None,
                     tokenization: str = 'separate'
                     ) -> tuple[float, list[str]]:
    """Generate for the examples' prompts and score ROUGE-L.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer.
        examples (Sequence[Example]): held-out records.
        max_new_tokens (int): generation length cap. Defaults to 256.
        batch_size (int): prompts per ``generate`` call. Defaults to 8.
        seed (int, optional): sample with this seed; None: greedy.
        tokenization (str): how prompts become tokens.

    Returns:
        tuple[float, list[str]]: ROUGE-L in percent and the responses.
    """
    prompts = [
        example.prompt_ids(tokenizer, tokenization) for example in examples
    ]
    responses = generate_responses(model, tokenizer, prompts, max_new_tokens,
                                   batch_size, seed, tokenization)
    score = rouge_l(responses, [example.references for example in examples])
    return score, responses


def display_names(paths: Sequence[str]) -> list[str]:
    """Each path relative to the folder that holds all of them, so that
    ``dolly/valid.jsonl`` and ``sinst/11_/valid.jsonl`` stay apart."""
    folders = [osp.dirname(osp.abspath(path)) for path in paths]
    parent = osp.commonpath(folders)
    return [osp.relpath(osp.abspath(path), parent) for path in paths]


def check_prompts_fit(model, tokenizer,
                      files: dict[str, Sequence[Example]],
                      max_new_tokens: int, tokenization: str) -> None:
    """Raise ValueError naming the record whose prompt plus
    ``max_new_tokens`` exceeds the model's positions."""
    for path, examples in files.items():
        for index, example in enumerate(examples):
            length = len(example.prompt_ids(tokenizer, tokenization))
            check_length_fits(
                length + max_new_tokens, (model, ),
                f'record {index + 1} of {path} (a {length}-token prompt and '
                f'up to {max_new_tokens} new tokens)')


def _write_json(path: str, content: dict) -> None:
    """Replace ``path`` in one step: an interrupted run leaves the last
    complete results, never half a file."""
    partial = f'{path}.partial'
    with open(partial, 'w', encoding='utf-8') as f:
        json.dump(content, f, indent=1)
    os.replace(partial, path)


def run_rouge_evaluation(model,
                         tokenizer,
                         paths: Sequence[str],
                         limit: Optional[int] = None,
                         max_new_tokens: int = 256,
                         batch_size: int = 8,
                         seeds: Optional[Sequence[int]] = None,
                         tokenization: str = 'separate',
                         output: Optional[str] = None,
                         model_name: str = '') -> dict[str, float]:
    """ROUGE-L of a model on several held-out files, as a table reports it.

    Every file is read and every prompt checked against the model's
    positions before anything is generated. With ``seeds`` each file is
    scored once per seed (sampling, MiniLLM's protocol) and the mean and
    standard deviation (over seeds, n - 1 in the denominator) are
    reported; without, once greedily. ``output`` is rewritten after each
    file, so that an interrupted run keeps what it finished.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer.
        paths (Sequence[str]): data files, as
            :func:`~.instruction_data.load_instruction_file` reads them.
        limit (int, optional): evaluate the first ``limit`` records of each.
        max_new_tokens (int): generation length cap. Defaults to 256.
        batch_size (int): prompts per ``generate`` call. Defaults to 8.
        seeds (Sequence[int], optional): sample once per seed; None: greedy.
        tokenization (str): how prompts become tokens, as in training.
        output (str, optional): JSON file for scores and responses; must not
            exist yet.
        model_name (str): recorded in ``output``.

    Returns:
        dict[str, float]: the (mean) ROUGE-L per path.
    """
    check_tokenization(tokenization)
    if seeds is not None and not seeds:
        raise ValueError('seeds is empty: give at least one seed, or None '
                         'for greedy decoding')
    if output is not None and osp.exists(output):
        raise FileExistsError(f'{output} exists; choose another --output or '
                              'remove it (results are never overwritten)')
    files = {path: load_instruction_file(path, limit) for path in paths}
    check_prompts_fit(model, tokenizer, files, max_new_tokens, tokenization)
    names = dict(zip(paths, display_names(paths)))
    scores, details = {}, {}
    for path, examples in files.items():
        runs = [(seed,
                 *evaluate_rouge_l(model, tokenizer, examples, max_new_tokens,
                                   batch_size, seed, tokenization))
                for seed in (seeds if seeds is not None else [None])]
        mean = statistics.fmean(score for _, score, _ in runs)
        scores[path] = mean
        if seeds is None:
            details[path] = {
                'decoding': 'greedy',
                'rouge_l': mean,
                'num_examples': len(examples),
                'responses': runs[0][2]
            }
            print(f'{names[path]}: ROUGE-L {mean:.2f} greedy '
                  f'({len(examples)} examples)')
        else:
            std = statistics.stdev(
                s for _, s, _ in runs) if len(runs) > 1 else 0.0
            details[path] = {
                'decoding':
                'sampling',
                'sampling':
                SAMPLING,
                'rouge_l':
                mean,
                'rouge_l_std':
                std,
                'num_examples':
                len(examples),
                'runs': [{
                    'seed': seed,
                    'rouge_l': score,
                    'responses': responses
                } for seed, score, responses in runs]
            }
            print(f'{names[path]}: ROUGE-L {mean:.2f} +- {std:.2f} over '
                  f'seeds {list(seeds)} ({len(examples)} examples)')
        if output is not None:
            _write_json(output, {
                'model': model_name,
                'tokenization': tokenization,
                'results': details
            })
    return scores


class RougeLMetric:
    """ROUGE-L of a model's responses to held-out records, as a metric of
    every evaluation (``LoCaDistillTrainer(generation_metrics=...)``).

    Called with the model and its tokenizer, it generates for the records'
    prompts and returns their ROUGE-L in percent. Given to the trainer as
    ``generation_metrics={'rougeL': RougeLMetric(examples)}``, its score
    enters the evaluation metrics as ``eval_rougeL`` before they are logged,
    so it reaches the console, every reporting backend and
    ``trainer.state.log_history``, and ``metric_for_best_model='rougeL'``
    (with ``load_best_model_at_end``) keeps the checkpoint of the best
    ROUGE-L, as MiniLLM selects its checkpoints.

    Args:
        examples (Sequence[Example]): held-out records.
        max_new_tokens (int): generation length cap. Defaults to 256.
        batch_size (int): prompts per ``generate`` call. Defaults to 8.
        seed (int, optional): sample with this seed; None (default): greedy.
        tokenization (str): how prompts become tokens, as in training.
    """

    def __init__(self,
                 examples: Sequence[Example],
                 max_new_tokens: int = 256,
                 batch_size: int = 8,
                 seed: Optional[int] = None,
                 tokenization: str = 'separate') -> None:
        if not examples:
            raise ValueError('RougeLMetric needs at least one example')
        check_tokenization(tokenization)
        self.examples = list(examples)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.seed = seed
        self.tokenization = tokenization

    def __call__(self, model, tokenizer) -> float:
        score, _ = evaluate_rouge_l(model, tokenizer, self.examples,
                                    self.max_new_tokens, self.batch_size,
                                    self.seed, self.tokenization)
        return score
