"""ROUGE-L evaluation: MiniLLM's sampling protocol, the evaluation tool's
edges, MiniLLM's tokenization and the ROUGE-L callback.

Tiny GPT-2 models with random weights and a word-level tokenizer built here;
no network.
"""
import json
import os
import statistics

os.environ['HF_HUB_OFFLINE'] = '1'

import _llm_utils as U  # noqa: E402  (imports loca_mm before transformers)
import pytest  # noqa: E402
import torch  # noqa: E402
from test_llm_distill import distill, load_tool  # noqa: E402
from tokenizers import processors  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from loca_mm.integrations import instruction_eval as E  # noqa: E402
from loca_mm.integrations.distill_run import read_run_args  # noqa: E402
from loca_mm.integrations.hf_models import load_causal_lm  # noqa: E402
from loca_mm.integrations.instruction_data import (  # noqa: E402
    IGNORE_INDEX, encode_example, load_instruction_file, prompt_token_ids)


@pytest.fixture(scope='module')
def tokenizer():
    return U.build_tokenizer(U.record_texts())


@pytest.fixture(scope='module')
def examples():
    return U.instruction_examples()


@pytest.fixture(scope='module')
def model(tokenizer):
    return U.tiny_gpt2(tokenizer, seed=3).eval()


def test_sampling_is_reproducible_per_seed(model, tokenizer, examples):
    prompts = [example.prompt for example in examples[:4]]
    state = torch.get_rng_state()

    def sample(seed):
        return E.generate_responses(
            model,
            tokenizer,
            prompts,
            max_new_tokens=8,
            batch_size=2,
            seed=seed)

    first = sample(10)
    assert sample(10) == first
    assert sample(20) != first
    # The caller's random stream is untouched.
    assert torch.equal(torch.get_rng_state(), state)
    greedy = E.generate_responses(
        model, tokenizer, prompts, max_new_tokens=8, batch_size=4)
    assert greedy != first


def test_seeds_are_averaged_and_results_written_per_file(
        tmp_path, model, tokenizer, examples, capsys):
    (tmp_path / 'dolly').mkdir()
    (tmp_path / 'sinst' / '11_').mkdir(parents=True)
    dolly = U.write_jsonl(tmp_path / 'dolly' / 'valid.jsonl', U.RECORDS[:3])
    sinst = U.write_jsonl(tmp_path / 'sinst' / '11_' / 'valid.jsonl',
                          U.RECORDS[3:])
    output = str(tmp_path / 'rouge.json')
    scores = E.run_rouge_evaluation(
        model,
        tokenizer, [dolly, sinst],
        max_new_tokens=5,
        batch_size=3,
        seeds=[10, 20],
        output=output)
    printed = capsys.readouterr().out
    assert 'dolly/valid.jsonl: ROUGE-L' in printed
    assert 'sinst/11_/valid.jsonl: ROUGE-L' in printed
    saved = json.loads(open(output).read())['results']
    for path, records in ((dolly, examples[:3]), (sinst, examples[3:])):
        per_seed = [
            E.evaluate_rouge_l(model, tokenizer, records, 5, 3, seed)[0]
            for seed in (10, 20)
        ]
        assert [run['rouge_l'] for run in saved[path]['runs']] == per_seed
        assert scores[path] == pytest.approx(statistics.fmean(per_seed))
        assert saved[path]['rouge_l_std'] == pytest.approx(
            statistics.stdev(per_seed))
        assert saved[path]['sampling'] == dict(
            do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
    # Never overwritten.
    with pytest.raises(FileExistsError, match='rouge.json exists'):
        E.run_rouge_evaluation(model, tokenizer, [dolly], output=output)


def test_every_file_is_checked_before_generating(tmp_path, model, tokenizer,
                                                 monkeypatch):
    good = U.write_jsonl(tmp_path / 'good.jsonl', U.RECORDS)
    empty = tmp_path / 'empty.jsonl'
    empty.write_text('\n')
    calls = []
    monkeypatch.setattr(E, 'evaluate_rouge_l',
                        lambda *a, **k: calls.append(a) or (0.0, []))
    with pytest.raises(ValueError, match='empty.jsonl holds no records'):
        E.run_rouge_evaluation(model, tokenizer, [good, str(empty)])
    with pytest.raises(FileNotFoundError):
        E.run_rouge_evaluation(model, tokenizer,
                               [good, str(tmp_path / 'missing.jsonl')])
    # A prompt that leaves no room for the new tokens names its record.
    with pytest.raises(
            ValueError,
            match=r'record 1 of .*good.jsonl \(a '
            r'\d+-token prompt and up to 120 new tokens\) needs'):
        E.run_rouge_evaluation(model, tokenizer, [good], max_new_tokens=120)
    assert calls == []


def test_results_of_finished_files_survive_a_failure(tmp_path, model,
                                                     tokenizer, monkeypatch):
    first = U.write_jsonl(tmp_path / 'a.jsonl', U.RECORDS[:2])
    second = U.write_jsonl(tmp_path / 'b.jsonl', U.RECORDS[2:])
    evaluate = E.evaluate_rouge_l

    def fails_on_second(model, tokenizer, records, *args):
        if records[0].instruction == U.RECORDS[2]['instruction']:
            raise RuntimeError('out of memory')
        return evaluate(model, tokenizer, records, *args)

    monkeypatch.setattr(E, 'evaluate_rouge_l', fails_on_second)
    output = tmp_path / 'partial.json'
    with pytest.raises(RuntimeError, match='out of memory'):
        E.run_rouge_evaluation(
            model,
            tokenizer, [first, second],
            max_new_tokens=4,
            output=str(output))
    assert list(json.loads(output.read_text())['results']) == [first]


def test_eval_tool_limit_zero_and_a_tokenizer_without_pad(tmp_path):
    with pytest.raises(
            ValueError, match='limit must be a number of records '
            '>= 1, got 0'):
        load_instruction_file(
            U.write_jsonl(tmp_path / 'r.jsonl', U.RECORDS), limit=0)
    tool = load_tool('eval_rouge')
    with pytest.raises(SystemExit):
        tool.parse_args(['model', 'data.jsonl', '--limit', '0'])
    assert tool.parse_args(['m', 'd', '--do_sample']).seeds == \
        [10, 20, 30, 40, 50]
    # A tokenizer with no pad token (as GPT-2's) pads with EOS.
    padded = U.build_tokenizer(U.record_texts())
    unpadded = PreTrainedTokenizerFast(
        tokenizer_object=padded.backend_tokenizer,
        unk_token='[UNK]',
        eos_token='[EOS]')
    assert unpadded.pad_token is None
    model_dir = tmp_path / 'model'
    U.tiny_gpt2(padded, seed=0).save_pretrained(model_dir)
    unpadded.save_pretrained(model_dir)
    data = U.write_jsonl(tmp_path / 'valid.jsonl', U.RECORDS[:3])
    scores = tool.main(
        [str(model_dir), data, '--max-new-tokens', '4', '--batch-size', '3'])
    assert 0.0 <= scores[data] <= 100.0


def test_minillm_tokenization_has_no_bos(tokenizer, examples):
    with_bos = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer,
        unk_token='[UNK]',
        pad_token='[PAD]',
        eos_token='[EOS]',
        bos_token='[UNK]')
    with_bos.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single='[UNK] $A', special_tokens=[('[UNK]', with_bos.unk_token_id)])
    example = examples[2]
    separate = encode_example(example, with_bos, 96, 64)
    minillm = encode_example(example, with_bos, 96, 64, 'minillm')
    bos = with_bos.unk_token_id
    assert separate['input_ids'][0] == bos
    assert minillm['input_ids'] == separate['input_ids'][1:]
    assert minillm['labels'] == separate['labels'][1:]
    joint = with_bos(
        example.prompt + example.references[0],
        add_special_tokens=False).input_ids
    assert minillm['input_ids'] == joint + [with_bos.eos_token_id]
    prompt = prompt_token_ids(with_bos, example.prompt, 'minillm')
    assert minillm['labels'][:len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert prompt == prompt_token_ids(with_bos, example.prompt)[1:]


def test_rouge_l_is_logged_and_picks_the_best_checkpoint(
        tmp_path, tokenizer, capsys):
    teacher, student = U.save_models(tmp_path, tokenizer)
    data = U.write_jsonl(tmp_path / 'train.jsonl', U.RECORDS)
    out = tmp_path / 'run'
    trainer = distill(teacher, student, data, out, '--eval_file', data,
                      '--rouge_limit', '3', '--rouge_max_new_tokens', '6',
                      '--max_steps', '3', '--learning_rate', '3e-2',
                      '--eval_strategy', 'steps', '--eval_steps', '1',
                      '--save_steps', '1', '--metric_for_best_model',
                      'rougeL', '--load_best_model_at_end', 'true')
    evaluations = [h for h in trainer.state.log_history if 'eval_loss' in h]
    assert len(evaluations) == 3
    scores = [h['eval_rougeL'] for h in evaluations]
    # The score is in the log entry as it is sent: the console printed it.
    printed = [
        line for line in capsys.readouterr().out.splitlines()
        if "'eval_loss'" in line
    ]
    assert len(printed) == 3 and all("'eval_rougeL'" in line
                                     for line in printed), printed
    best = max(scores)
    assert trainer.state.best_metric == best
    step = evaluations[scores.index(best)]['step']
    checkpoint = out / f'checkpoint-{step}'
    assert trainer.state.best_model_checkpoint == str(checkpoint)
    # The best checkpoint's own ROUGE-L is the logged one.
    rescored, _ = E.evaluate_rouge_l(
        load_causal_lm(str(checkpoint)), tokenizer,
        U.instruction_examples()[:3], 6, 8)
    assert rescored == pytest.approx(best)
    # A checkpoint's run arguments are those of its run folder.
    assert read_run_args(str(checkpoint))[1] == str(out / 'distill_args.json')


def test_distill_tool_refuses_a_length_beyond_the_positions(
        tmp_path, tokenizer):
    model_dir = tmp_path / 'model'
    U.tiny_gpt2(tokenizer, 0).config.save_pretrained(model_dir)
    # Only the config is there: the check happens before any weights load.
    with pytest.raises(
            ValueError,
            match=r'--max_length 200 \(the student, .*model\) needs 200 '
            'positions but GPT2Config embeds only 128'):
        load_tool('distill').main([
            '--teacher',
            str(model_dir), '--student',
            str(model_dir), '--train_file',
            U.write_jsonl(tmp_path / 't.jsonl', U.RECORDS), '--output_dir',
            str(tmp_path / 'o'), '--max_length', '200', '--max_prompt_length',
            '64', '--use_cpu', 'true', '--report_to', 'none'
        ])
