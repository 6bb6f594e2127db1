"""Greedy generation and ROUGE-L, as the instruction-following tables report.

The score follows the S-NI / MiniLLM evaluation: Google's ``rouge-score``
package, ROUGE-L F-measure with Porter stemming, the best match over an
example's references, averaged over examples and multiplied by 100.
"""
from __future__ import annotations

from typing import Sequence

import torch
from rouge_score import rouge_scorer

from .instruction_data import InstructionExample


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


@torch.no_grad()
def generate_responses(model,
                       tokenizer,
                       prompts: Sequence[str],
                       max_new_tokens: int = 256,
                       batch_size: int = 8) -> list[str]:
    """Greedy continuations of the prompts, without the prompts.

    Prompts are padded on the left so that every row's continuation starts
    right after its own last prompt token.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer (with a pad or EOS token for padding).
        prompts (Sequence[str]): the prompts.
        max_new_tokens (int): generation length cap. Defaults to 256.
        batch_size (int): prompts per ``generate`` call. Defaults to 8.

    Returns:
        list[str]: the decoded responses, special tokens removed, stripped.
    """
    pad_token_id = tokenizer.pad_token_id
    if pad_token_id is None:
        pad_token_id = tokenizer.eos_token_id
    if pad_token_id is None:
        raise ValueError('the tokenizer has neither a pad nor an EOS token')
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = 'left'
    responses = []
    try:
        for start in range(0, len(prompts), batch_size):
            rows = [
                tokenizer(prompt).input_ids
                for prompt in prompts[start:start + batch_size]
            ]
            batch = tokenizer.pad({'input_ids': rows}, return_tensors='pt')
            batch = {key: value.to(device) for key, value in batch.items()}
            output = model.generate(
                **batch,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_token_id,
                eos_token_id=tokenizer.eos_token_id)
            new_tokens = output[:, batch['input_ids'].shape[1]:]
            responses.extend(text.strip() for text in tokenizer.batch_decode(
                new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return responses


def evaluate_rouge_l(model,
                     tokenizer,
                     examples: Sequence[InstructionExample],
                     max_new_tokens: int = 256,
                     batch_size: int = 8) -> tuple[float, list[str]]:
    """Generate greedily for the examples' prompts and score ROUGE-L.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer.
        examples (Sequence[InstructionExample]): held-out records.
        max_new_tokens (int): generation length cap. Defaults to 256.
        batch_size (int): prompts per ``generate`` call. Defaults to 8.

    Returns:
        tuple[float, list[str]]: ROUGE-L in percent and the responses.
    """
    responses = generate_responses(model, tokenizer,
                                   [example.prompt for example in examples],
                                   max_new_tokens, batch_size)
    score = rouge_l(responses, [example.references for example in examples])
    return score, responses
