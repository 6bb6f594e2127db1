"""Training and evaluation files in every form users have them: Dolly and
MiniLLM records, prompt/completion, conversations; JSON, JSON Lines and
Parquet. Tiny local models and a word-level chat tokenizer; no network."""
import json
import os

os.environ['HF_HUB_OFFLINE'] = '1'

import _llm_utils as U  # noqa: E402  (imports loca_mm before transformers)
import pytest  # noqa: E402
from datasets import Dataset  # noqa: E402

from test_llm_distill import load_tool  # noqa: E402

from loca_mm.integrations.instruction_data import (  # noqa: E402
    IGNORE_INDEX, RECORD_FORMS, ChatExample, CompletionExample,
    InstructionDataset, encode_example, load_instruction_file)


@pytest.fixture(scope='module')
def tokenizer():
    return U.chat_tokenizer()


def write(path, records):
    """``records`` in the file format its name ends with."""
    path = str(path)
    if path.endswith('.parquet'):
        Dataset.from_list(records).to_parquet(path)
    elif path.endswith('.json'):
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(records, f)
    else:
        U.write_jsonl(path, records)
    return path


def completion_records(records=U.RECORDS):
    """The Dolly records as prompt/completion, with the same prompts."""
    return [{
        'prompt': example.prompt,
        'completion': example.references[0]
    } for example in U.instruction_examples(records)]


def labelled_tokens(tokenizer, item):
    return tokenizer.convert_ids_to_tokens(
        [t for t in item['labels'] if t != IGNORE_INDEX])


@pytest.mark.parametrize('ending', ['jsonl', 'json', 'parquet'])
def test_the_three_forms_load_from_every_file_format(tmp_path, tokenizer,
                                                     ending):
    dolly = load_instruction_file(
        write(tmp_path / f'dolly.{ending}', U.RECORDS))
    completions = load_instruction_file(
        write(tmp_path / f'completion.{ending}', completion_records()))
    chats = load_instruction_file(
        write(tmp_path / f'chat.{ending}', U.chat_records()))
    assert all(isinstance(c, CompletionExample) for c in completions)
    assert all(isinstance(c, ChatExample) for c in chats)
    for examples in (dolly, completions, chats):
        assert [e.references for e in examples] == \
            [(r['response'], ) for r in U.RECORDS]
    # A prompt/completion record is the Dolly record it was made from.
    for tokenization in ('separate', 'minillm'):
        assert [
            encode_example(e, tokenizer, 96, 64, tokenization)
            for e in completions
        ] == [
            encode_example(e, tokenizer, 96, 64, tokenization) for e in dolly
        ]


def test_a_conversation_is_trained_on_the_assistants_last_turn(tokenizer):
    turns = [
        {'role': 'system', 'content': 'Name a colour of the sky.'},
        {'role': 'user', 'content': 'What did the cat do?'},
        {'role': 'assistant', 'content': 'The cat sat on the mat.'},
        {'role': 'user', 'content': 'What did the dog do?'},
        {'role': 'assistant', 'content': 'The dog ran in the park.'},
    ]
    item = encode_example(ChatExample(tuple(turns)), tokenizer, 96, 64)
    rendered = tokenizer.apply_chat_template(turns, tokenize=False)
    assert tokenizer.convert_ids_to_tokens(item['input_ids']) == \
        tokenizer.tokenize(rendered)
    # The response is the last turn as the template closes it; the earlier
    # answer, in the prompt, has no label.
    assert labelled_tokens(tokenizer, item) == \
        ['The', 'dog', 'ran', 'in', 'the', 'park', '.', '[EOS]']
    prompt = tokenizer.apply_chat_template(
        turns[:-1], tokenize=False, add_generation_prompt=True)
    assert item['labels'].count(IGNORE_INDEX) == \
        len(tokenizer.tokenize(prompt))


def test_every_form_labels_the_response_only(tmp_path, tokenizer):
    record = U.RECORDS[0]
    forms = {
        'dolly': [record],
        'completion': completion_records([record]),
        'chat': U.chat_records([record]),
        # TRL's conversational prompt/completion.
        'chat_pc': [{
            'prompt': U.chat_records([record])[0]['messages'][:1],
            'completion': U.chat_records([record])[0]['messages'][1:]
        }],
    }
    labelled = {
        name: labelled_tokens(
            tokenizer,
            InstructionDataset(
                load_instruction_file(write(tmp_path / f'{name}.jsonl',
                                            records)), tokenizer, 96, 64)[0])
        for name, records in forms.items()
    }
    response = ['The', 'cat', 'sat', 'on', 'the', 'mat', '.', '[EOS]']
    assert labelled == {name: response for name in forms}


def test_an_unknown_form_names_its_fields_and_the_accepted_forms(tmp_path):
    path = write(tmp_path / 'qa.jsonl', [{'question': 'q', 'answer': 'a'}])
    with pytest.raises(ValueError) as error:
        load_instruction_file(path)
    message = str(error.value)
    assert "qa.jsonl: record 1: a record with fields ['answer', 'question']" \
        in message
    assert all(form in message for form in RECORD_FORMS)
    with pytest.raises(
            ValueError,
            match="expected a file that datasets reads, ending in "
            r".json, .jsonl, .parquet; got '.csv'"):
        load_instruction_file(str(tmp_path / 'data.csv'))
    bad_turns = write(tmp_path / 'turns.jsonl', [{
        'messages': [{'role': 'user', 'content': 'hi'}]
    }])
    with pytest.raises(ValueError, match=r"at least one turn before the "
                       r"response, the assistant's last turn; got roles "
                       r"\['user'\]"):
        load_instruction_file(bad_turns)


def test_conversations_need_a_chat_template(tmp_path):
    plain = U.build_tokenizer(U.record_texts(), extra_words=U.CHAT_WORDS)
    chats = load_instruction_file(
        write(tmp_path / 'chat.jsonl', U.chat_records()))
    with pytest.raises(ValueError, match='need a tokenizer with a chat '
                       'template'):
        InstructionDataset(chats, plain, 96, 64)


def test_distill_and_eval_tools_run_on_conversations(tmp_path, tokenizer):
    teacher, student = U.save_models(tmp_path, tokenizer)
    train_file = write(tmp_path / 'train.parquet', U.chat_records())
    eval_file = write(tmp_path / 'valid.json', U.chat_records()[:3])
    out = tmp_path / 'run'
    trainer = load_tool('distill').main([
        '--teacher', teacher, '--student', student, '--train_file',
        train_file, '--output_dir',
        str(out), '--max_length', '64', '--max_prompt_length', '32',
        '--use_cpu', 'true', '--report_to', 'none', '--disable_tqdm', 'true',
        '--max_steps', '2', '--per_device_train_batch_size', '3',
        '--logging_steps', '1', '--save_strategy', 'no', '--seed', '0'
    ])
    # Every labelled token is the last turn's (its content and [EOS]).
    for item, record in zip(trainer.train_dataset, U.chat_records()):
        assert labelled_tokens(tokenizer, item) == tokenizer.tokenize(
            record['messages'][-1]['content']) + ['[EOS]']
    assert len([h for h in trainer.state.log_history if 'loss' in h]) == 2
    scores = load_tool('eval_rouge').main(
        [str(out), eval_file, '--max-new-tokens', '6', '--batch-size', '2'])
    assert 0.0 <= scores[eval_file] <= 100.0
