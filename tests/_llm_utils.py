"""Tiny causal LMs, a word-level tokenizer and instruction records for tests.

Everything is built locally (no Hub access): GPT-2 models from a one-layer
config with random weights and a tokenizer whose vocabulary is every word
of the records and of the prompt templates.
"""
import json
import os

# Nothing in these tests may reach the Hub; set before transformers loads.
os.environ['HF_HUB_OFFLINE'] = '1'

# loca_mm before transformers: its fixes let torchvision (which transformers
# imports) load beside the CPU build of torch.
import loca_mm  # noqa: E402,F401,I001
import torch  # noqa: E402
from tokenizers import (  # noqa: E402
    Tokenizer, models, pre_tokenizers, processors)
from transformers import (  # noqa: E402
    GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
    PreTrainedTokenizerFast)

from loca_mm.integrations.instruction_data import (  # noqa: E402
    PROMPT_WITH_CONTEXT, PROMPT_WITHOUT_CONTEXT, InstructionExample)

SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[EOS]')

RECORDS = [
    {
        'instruction': 'What did the cat do?',
        'context': '',
        'response': 'The cat sat on the mat.'
    },
    {
        'instruction': 'What did the dog do?',
        'context': '',
        'response': 'The dog ran in the park.'
    },
    {
        'instruction': 'Where did the bird fly?',
        'context': 'It was windy.',
        'response': 'The bird flew over the tall tree.'
    },
    {
        'instruction': 'Name a colour of the sky.',
        'context': '',
        'response': 'Blue.'
    },
    {
        'instruction': 'What did the fish do?',
        'context': 'It was wet.',
        'response': 'The fish swam in the cold river.'
    },
    {
        'instruction': 'Who read the book?',
        'context': '',
        'response': 'The old man read the book.'
    },
]


def build_tokenizer(texts,
                    extra_words=(),
                    bos=False) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the words of ``texts`` and templates;
    with ``bos``, one that starts every encoding with ``[BOS]`` (as LLaMA's),
    so that the two tokenizations of prompts differ."""
    pre_tokenizer = pre_tokenizers.Whitespace()
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    if bos:
        vocab['[BOS]'] = len(vocab)
    for text in [PROMPT_WITH_CONTEXT, PROMPT_WITHOUT_CONTEXT, *texts]:
        for word, _ in pre_tokenizer.pre_tokenize_str(text):
            vocab.setdefault(word, len(vocab))
    for word in extra_words:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token='[UNK]'))
    backend.pre_tokenizer = pre_tokenizer
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single='[BOS] $A', special_tokens=[('[BOS]', vocab['[BOS]'])])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token='[UNK]',
        pad_token='[PAD]',
        eos_token='[EOS]',
        **({
            'bos_token': '[BOS]'
        } if bos else {}))


# A chat template in the tokenizer's words: each turn is its role, ':' and
# its content, closed by [EOS]; the generation prompt opens the assistant's.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : "
    "{{ message['content'] }} [EOS] {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}")
CHAT_WORDS = ('system', 'user', 'assistant', ':')


def chat_tokenizer(records=RECORDS) -> PreTrainedTokenizerFast:
    """:func:`build_tokenizer` over the records, with a chat template."""
    tokenizer = build_tokenizer(record_texts(records), extra_words=CHAT_WORDS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def chat_records(records=RECORDS):
    """The records as conversations: a user turn, the assistant's answer."""
    return [{
        'messages': [{
            'role': 'user',
            'content': ' '.join(filter(None, [r['instruction'], r['context']]))
        }, {
            'role': 'assistant',
            'content': r['response']
        }]
    } for r in records]


def instruction_examples(records=RECORDS):
    return [
        InstructionExample(r['instruction'], r['context'], (r['response'], ))
        for r in records
    ]


def record_texts(records=RECORDS):
    return [
        ' '.join([r['instruction'], r['context'], r['response']])
        for r in records
    ]


def tiny_gpt2(tokenizer, seed: int, vocab_size=None) -> GPT2LMHeadModel:
    """A one-layer GPT-2 without dropout, random weights, tokenizer's ids."""
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=2,
        n_positions=128,
        # No dropout: two forward passes of one batch must agree.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        vocab_size=vocab_size or len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config)


def tiny_llama(tokenizer, seed: int) -> LlamaForCausalLM:
    """A one-layer Llama (untied output layer, no bias), random weights."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config)


def write_jsonl(path, records) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        for record in records:
            f.write(json.dumps(record) + '\n')
    return str(path)


def save_models(folder, tokenizer, seeds=(('teacher', 1), ('student', 0))):
    """Tiny GPT-2 teacher and student saved with the tokenizer; returns
    their folders."""
    folders = []
    for name, seed in seeds:
        path = folder / name
        tiny_gpt2(tokenizer, seed).save_pretrained(path)
        tokenizer.save_pretrained(path)
        folders.append(str(path))
    return folders
