"""Loading the causal LMs and tokenizers of a distillation run: precision,
padding, position limits and an optional LoRA student."""
from __future__ import annotations

import fnmatch
import json
import os
import os.path as osp
from typing import Optional, Sequence

import torch
from torch import nn

DTYPES = {
    'float32': torch.float32,
    'bfloat16': torch.bfloat16,
    'float16': torch.float16
}


def load_tokenizer(name: str):
    """The tokenizer of a model, with EOS as padding if it has no pad token.

    GPT-2's tokenizer has no pad token; padded positions are masked out of
    attention and of the loss, so which id fills them does not matter.
    """
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f'the tokenizer of {name} has neither a pad nor '
                             'an EOS token to pad batches with')
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


#: The files ``save_pretrained`` writes for a whole model's weights (sharded
#: or not), its configs, and ``peft`` adapters, as glob patterns.
WEIGHT_FILES = ('model*.safetensors', 'model.safetensors.index.json',
                'pytorch_model*.bin', 'pytorch_model.bin.index.json')
MODEL_FILES = ('config.json', 'generation_config.json') + WEIGHT_FILES
ADAPTER_FILES = ('adapter_config.json', 'adapter_model*')


def files_matching(folder: str, patterns: Sequence[str]) -> list[str]:
    """The names in ``folder`` that match one of the glob ``patterns``."""
    return [
        name for name in sorted(os.listdir(folder))
        if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
    ]


def check_one_model(folder: str) -> None:
    """Raise ValueError if ``folder`` holds whole-model weights and adapters.

    ``from_pretrained`` of such a folder loads the weights and then applies
    the adapters on top of them, whichever of the two was saved last.
    """
    weights = files_matching(folder, WEIGHT_FILES)
    adapters = files_matching(folder, ADAPTER_FILES)
    if weights and adapters:
        raise ValueError(
            f'{folder} holds a whole model ({", ".join(weights)}) and LoRA '
            f'adapters ({", ".join(adapters)}): loading it would apply the '
            'adapters on top of the weights. Remove the files of the one '
            'you do not mean (tools/llm/distill.py with '
            '--overwrite_output_dir removes the earlier model)')


def load_causal_lm(name: str, dtype: str = 'float32') -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained(name)`` in the given precision.

    A local directory holding both a whole model and adapters is refused
    (:func:`check_one_model`); one holding adapters only loads their base
    model with the adapters applied.

    Args:
        name (str): local directory or Hub name.
        dtype (str): a key of :data:`DTYPES`.
    """
    from transformers import AutoModelForCausalLM
    if dtype not in DTYPES:
        raise ValueError(f'dtype must be one of {tuple(DTYPES)}, got '
                         f'{dtype!r}')
    if osp.isdir(name):
        check_one_model(name)
    return AutoModelForCausalLM.from_pretrained(name, dtype=DTYPES[dtype])


def load_model_config(name: str):
    """The config of a causal LM, read without its weights; for a folder of
    ``peft`` adapters, the config of their base model."""
    from transformers import AutoConfig
    adapter_config = osp.join(name, 'adapter_config.json')
    if osp.isfile(adapter_config) and not osp.isfile(
            osp.join(name, 'config.json')):
        with open(adapter_config, encoding='utf-8') as f:
            name = json.load(f)['base_model_name_or_path']
    return AutoConfig.from_pretrained(name)


def max_positions(model) -> Optional[int]:
    """The number of positions a model (or a model config) embeds, None if
    it has no limit."""
    config = getattr(model, 'config', model)
    return getattr(config, 'max_position_embeddings', None)


def check_length_fits(length: int, models: Sequence, what: str) -> None:
    """Raise ValueError if ``length`` tokens exceed a model's positions.

    Args:
        length (int): the number of positions needed.
        models (Sequence): the models that will see them, or their configs
            (:func:`load_model_config`).
        what (str): what needs them, for the message.
    """
    for model in models:
        limit = max_positions(model)
        if limit is not None and length > limit:
            raise ValueError(f'{what} needs {length} positions but '
                             f'{type(model).__name__} embeds only {limit} '
                             '(max_position_embeddings); lower the length')


def add_lora(model: nn.Module,
             r: int,
             lora_alpha: float = 16.0,
             dropout: float = 0.05,
             target_modules: Optional[Sequence[str]] = None) -> nn.Module:
    """Wrap a student in LoRA adapters (``peft``); only they are trained.

    Args:
        model (nn.Module): the student causal LM.
        r (int): the adapters' rank, >= 1.
        lora_alpha (float): LoRA's scaling numerator. Defaults to 16.
        dropout (float): dropout on the adapters' input. Defaults to 0.05.
        target_modules (Sequence[str], optional): names of the layers to
            adapt; None lets ``peft`` pick its default for the architecture
            (the attention projections).

    Returns:
        nn.Module: a ``peft.PeftModel``; ``save_pretrained`` writes the
        adapters only.
    """
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f'LoRA rank r must be an int >= 1, got {r!r}')
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError('a LoRA student needs peft: pip install -r '
                          'requirements/llm.txt') from error
    config = LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules) if target_modules else None,
        task_type='CAUSAL_LM')
    return get_peft_model(model, config)
