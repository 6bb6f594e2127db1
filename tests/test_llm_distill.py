"""LoCa distillation of causal LMs on Hugging Face Transformers.

Tiny GPT-2 models with random weights and a word-level tokenizer built here;
no network (HF_HUB_OFFLINE is set before transformers is imported).
"""
import importlib.util
import json
import os
import os.path as osp
import sys

os.environ['HF_HUB_OFFLINE'] = '1'

import _llm_utils as U  # noqa: E402  (imports loca_mm before transformers)
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from loca_mm.integrations.hf_models import (  # noqa: E402
    add_lora, load_causal_lm, load_model_config, max_positions)
from loca_mm.integrations.instruction_data import (  # noqa: E402
    IGNORE_INDEX, InstructionDataset, ResponseOnlyCollator, encode_example,
    load_instruction_file)
from loca_mm.integrations.instruction_eval import (  # noqa: E402
    evaluate_rouge_l, generate_responses, rouge_l)
from loca_mm.integrations.transformers import (  # noqa: E402
    LoCaDistillArguments, LoCaDistillTrainer, next_token_labels,
    response_token_loss)

TOOLS = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', 'llm')


def load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'llm_tool_{name}', osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tokenizer():
    return U.build_tokenizer(U.record_texts())


@pytest.fixture(scope='module')
def examples():
    return U.instruction_examples()


def make_args(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path / 'out'),
        use_cpu=True,
        report_to='none',
        disable_tqdm=True,
        save_strategy='no',
        per_device_train_batch_size=3,
        loss_chunk_size=16)
    settings.update(overrides)
    return LoCaDistillArguments(**settings)


def make_trainer(tmp_path, tokenizer, examples, **overrides):
    dataset = InstructionDataset(
        examples, tokenizer, max_length=96, max_prompt_length=64)
    return LoCaDistillTrainer(
        model=U.tiny_gpt2(tokenizer, seed=0),
        teacher_model=U.tiny_gpt2(tokenizer, seed=1),
        args=make_args(tmp_path, **overrides),
        train_dataset=dataset,
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        teacher_processing_class=tokenizer)


def masked_labels(batch=3, length=10, vocab=13, seed=0):
    """Token labels with a prompt of varying length and right padding."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, vocab, (batch, length), generator=generator)
    for row, (prompt, response) in enumerate([(3, 5), (1, 8), (4, 2)]):
        labels[row, :prompt] = IGNORE_INDEX
        labels[row, prompt + response:] = IGNORE_INDEX
    return labels


def reference_loss(student_logits, teacher_logits, labels, distill_fn,
                   ce_weight, kd_weight):
    """CE + distillation on the kept positions, gathered one by one."""
    rows = [(b, t) for b in range(labels.shape[0])
            for t in range(labels.shape[1] - 1)
            if labels[b, t + 1] != IGNORE_INDEX]
    kept_S = torch.stack([student_logits[b, t] for b, t in rows])
    kept_T = torch.stack([teacher_logits[b, t] for b, t in rows])
    targets = torch.stack([labels[b, t + 1] for b, t in rows])
    distill = distill_fn(kept_S, kept_T, targets)
    return (ce_weight * F.cross_entropy(kept_S, targets) +
            kd_weight * distill.loss), distill


def test_next_token_labels_shift_once():
    labels = torch.tensor([[-100, -100, 5, 6, 2, -100], [-100, 7, 8, 9, 10,
                                                         2]])
    assert next_token_labels(labels).tolist() == [
        [-100, 5, 6, 2, -100, -100],
        [7, 8, 9, 10, 2, -100],
    ]


@pytest.mark.parametrize('distill_loss,calibrate', [('kd', 'wrong'),
                                                    ('kd', 'none'),
                                                    ('kd', 'margin'),
                                                    ('dkd', 'wrong'),
                                                    ('dkd', 'none')])
def test_loss_equals_functional_on_kept_positions(tmp_path, distill_loss,
                                                  calibrate):
    args = make_args(
        tmp_path,
        distill_loss=distill_loss,
        calibrate=calibrate,
        tau=2.0,
        alpha=0.8,
        ce_weight=0.3,
        kd_weight=0.7,
        loss_chunk_size=4)
    labels = masked_labels()
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(3, 10, 13, generator=generator).requires_grad_()
    teacher = 2 * torch.randn(3, 10, 13, generator=generator)
    # Make the teacher right at every other position, so that 'wrong'
    # corrects some response tokens and leaves others alone.
    targets = next_token_labels(labels)
    right = (targets != IGNORE_INDEX) & (torch.arange(10) % 2 == 0)
    teacher[right] += 20 * F.one_hot(targets[right], 13)
    distill_fn = args.distill_function()
    result = response_token_loss(
        student, teacher, labels, distill_fn, 0.3, 0.7, chunk_size=4)
    expected, distill = reference_loss(student, teacher, labels, distill_fn,
                                       0.3, 0.7)
    torch.testing.assert_close(result.loss, expected)
    grad, = torch.autograd.grad(result.loss, student)
    grad_ref, = torch.autograd.grad(expected, student)
    torch.testing.assert_close(grad, grad_ref)
    assert int(result.valid.sum()) == 15  # 5 + 8 + 2 response tokens
    assert int(result.calibrated.sum()) == int(distill.calibrated.sum())
    if calibrate == 'wrong':
        assert 0 < int(distill.calibrated.sum()) < 15


def test_only_positions_predicting_response_tokens_count():
    labels = masked_labels()
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(3, 10, 13, generator=generator)
    teacher = torch.randn(3, 10, 13, generator=generator)
    distill_fn = LoCaDistillArguments(
        output_dir='unused', report_to='none').distill_function()

    def loss_of(student_logits, teacher_logits):
        return response_token_loss(
            student_logits, teacher_logits, labels, distill_fn,
            chunk_size=7).loss

    base = loss_of(student, teacher)
    scored = next_token_labels(labels) != IGNORE_INDEX
    # Prompt and padding positions (and the last position of each row)
    # predict no response token: new logits there change nothing.
    noise = 50 * torch.randn(3, 10, 13, generator=generator)
    quiet = ~scored.unsqueeze(-1)
    assert torch.equal(loss_of(student + noise * quiet, teacher), base)
    assert torch.equal(loss_of(student, teacher + noise * quiet), base)
    # The last prompt position predicts the first response token: it counts.
    assert scored[0, 2] and not scored[0, 1]
    bumped = student.clone()
    bumped[0, 2] += noise[0, 2]
    assert not torch.isclose(loss_of(bumped, teacher), base)
    leaf = student.clone().requires_grad_()
    grad, = torch.autograd.grad(loss_of(leaf, teacher), leaf)
    assert (grad[~scored] == 0).all()
    assert (grad[scored].abs().sum(-1) > 0).all()


def test_encoding_labels_response_and_eos_only(tokenizer, examples):
    item = encode_example(examples[0], tokenizer, 96, 64)
    prompt_ids = tokenizer(examples[0].prompt).input_ids
    response_ids = tokenizer(examples[0].references[0]).input_ids
    assert item['input_ids'] == prompt_ids + response_ids + [
        tokenizer.eos_token_id
    ]
    assert item['labels'] == ([IGNORE_INDEX] * len(prompt_ids) + response_ids +
                              [tokenizer.eos_token_id])
    # Too long a prompt drops the record; too long a response is cut.
    assert encode_example(examples[0], tokenizer, 96, len(prompt_ids) - 1) \
        is None
    cut = encode_example(examples[0], tokenizer, len(prompt_ids) + 2, 64)
    assert cut['labels'][-2:] == response_ids[:2]
    batch = ResponseOnlyCollator(tokenizer.pad_token_id)(
        [item, encode_example(examples[3], tokenizer, 96, 64)])
    short = len(encode_example(examples[3], tokenizer, 96, 64)['input_ids'])
    assert batch['attention_mask'][1].sum() == short
    assert (batch['labels'][1, short:] == IGNORE_INDEX).all()
    assert (batch['input_ids'][1, short:] == tokenizer.pad_token_id).all()


def test_reading_dolly_and_minillm_records(tmp_path):
    path = U.write_jsonl(tmp_path / 'mixed.jsonl', [
        {
            'instruction': 'a',
            'context': 'b',
            'response': 'c',
            'category': 'open_qa'
        },
        {
            'instruction': 'd',
            'input': '',
            'output': ['e', 'f']
        },
    ])
    first, second = load_instruction_file(path)
    assert (first.instruction, first.context, first.references) == \
        ('a', 'b', ('c', ))
    assert '### Input:\nb\n\n### Response:\n' in first.prompt
    assert second.references == ('e', 'f') and '### Input' not in \
        second.prompt
    bad = U.write_jsonl(tmp_path / 'bad.jsonl', [{
        'instruction': 'a',
        'response': 'b'
    }, {
        'instruction': 'c'
    }])
    with pytest.raises(
            ValueError,
            match=r"bad.jsonl: record 2: a record with fields "
            r"\['instruction'\] is in none of the accepted forms"):
        load_instruction_file(bad)


def test_trainer_loss_matches_models_and_logs_corrected_fraction(
        tmp_path, tokenizer, examples):
    trainer = make_trainer(
        tmp_path, tokenizer, examples, alpha=0.85, logging_steps=1)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in (0, 2)])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    model_inputs = {k: v for k, v in batch.items() if k != 'labels'}
    student_logits = trainer.model(**model_inputs).logits
    with torch.no_grad():
        teacher_logits = trainer.teacher_model(**model_inputs).logits
    expected, distill = reference_loss(student_logits, teacher_logits,
                                       batch['labels'],
                                       trainer.args.distill_function(), 0.5,
                                       0.5)
    torch.testing.assert_close(loss, expected)
    # The fraction of response tokens LoCa corrected reaches the log.
    trainer.log({'loss': loss.item()})
    logged = trainer.state.log_history[-1]
    kept = next_token_labels(batch['labels']) != IGNORE_INDEX
    targets = next_token_labels(batch['labels'])[kept]
    teacher_rows = teacher_logits[kept]
    label_logit = teacher_rows.gather(-1, targets[:, None])
    others = teacher_rows.scatter(-1, targets[:, None], float('-inf'))
    wrong = (others.amax(-1, keepdim=True) >= label_logit).float().mean()
    assert logged['loca_ratio'] == pytest.approx(wrong.item())
    assert logged['loca_ratio'] == pytest.approx(
        distill.calibrated.float().mean().item())
    assert 0.0 < logged['loca_scale'] < 1.0
    # Evaluation entries neither get nor reset the statistics.
    trainer.log({'eval_loss': 1.0})
    assert 'loca_ratio' not in trainer.state.log_history[-1]


def test_distill_tool_trains_saves_and_reloads(tmp_path, tokenizer):
    teacher_dir, student_dir = tmp_path / 'teacher', tmp_path / 'student'
    for directory, seed in ((teacher_dir, 1), (student_dir, 0)):
        U.tiny_gpt2(tokenizer, seed).save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    teacher_before = U.tiny_gpt2(tokenizer, 1).state_dict()
    train_file = U.write_jsonl(tmp_path / 'train.jsonl', U.RECORDS)
    out = tmp_path / 'run'
    trainer = load_tool('distill').main([
        '--teacher',
        str(teacher_dir), '--student',
        str(student_dir), '--train_file', train_file, '--output_dir',
        str(out), '--max_length', '96', '--max_prompt_length', '64',
        '--use_cpu', 'true', '--report_to', 'none', '--disable_tqdm', 'true',
        '--max_steps', '8', '--learning_rate', '1e-2',
        '--per_device_train_batch_size', '3', '--logging_steps', '2',
        '--save_steps', '8', '--loss_chunk_size', '16', '--seed', '0'
    ])
    logs = [h for h in trainer.state.log_history if 'loss' in h]
    assert len(logs) == 4
    losses = [h['loss'] for h in logs]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(0.0 <= h['loca_ratio'] <= 1.0 for h in logs)
    # The teacher stayed frozen.
    for name, value in trainer.teacher_model.state_dict().items():
        assert torch.equal(value, teacher_before[name]), name
    # The student was saved (final model and a Trainer checkpoint) and
    # reloads with the same weights and tokenizer.
    batch = trainer.data_collator([trainer.train_dataset[0]])
    inputs = {k: v for k, v in batch.items() if k != 'labels'}
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**inputs).logits
    for directory in (out, out / 'checkpoint-8'):
        reloaded = AutoModelForCausalLM.from_pretrained(directory).eval()
        with torch.no_grad():
            torch.testing.assert_close(reloaded(**inputs).logits, expected)
        assert AutoTokenizer.from_pretrained(directory).get_vocab() == \
            tokenizer.get_vocab()
    assert json.loads((out / 'checkpoint-8' /
                       'trainer_state.json').read_text())['global_step'] == 8
    # The evaluation command runs on the saved student.
    scores = load_tool('eval_rouge').main([
        str(out), train_file, '--max-new-tokens', '8', '--batch-size', '4',
        '--output',
        str(tmp_path / 'rouge.json')
    ])
    score = scores[train_file]
    assert 0.0 <= score <= 100.0
    saved = json.loads((tmp_path / 'rouge.json').read_text())
    assert len(saved['results'][train_file]['responses']) == len(U.RECORDS)


def test_mismatched_vocabularies_are_refused(tmp_path, tokenizer, examples):
    dataset = InstructionDataset(examples, tokenizer, 96, 64)
    common = dict(
        args=make_args(tmp_path),
        train_dataset=dataset,
        processing_class=tokenizer)
    student = U.tiny_gpt2(tokenizer, seed=0)
    bigger = U.tiny_gpt2(tokenizer, seed=1, vocab_size=len(tokenizer) + 3)
    # Without the teacher's tokenizer the extra rows may be real tokens.
    with pytest.raises(
            ValueError,
            match='share one vocabulary.*teacher '
            rf'predicts {len(tokenizer) + 3} tokens'):
        LoCaDistillTrainer(model=student, teacher_model=bigger, **common)
    # Same size, different tokens: caught by comparing the tokenizers.
    other = U.build_tokenizer(U.record_texts(), extra_words=['zebra'])
    renamed = U.build_tokenizer(U.record_texts(), extra_words=['quokka'])
    with pytest.raises(ValueError, match='tokenizers differ'):
        LoCaDistillTrainer(
            model=U.tiny_gpt2(other, 0),
            teacher_model=U.tiny_gpt2(renamed, 1),
            args=make_args(tmp_path),
            train_dataset=dataset,
            processing_class=other,
            teacher_processing_class=renamed)
    with pytest.raises(
            ValueError,
            match='tokenizer has .* tokens but the '
            'student predicts only'):
        LoCaDistillTrainer(
            model=U.tiny_gpt2(tokenizer, 0, vocab_size=10),
            teacher_model=U.tiny_gpt2(tokenizer, 1, vocab_size=10),
            **common)


def test_bad_loss_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match='distill_loss'):
        make_args(tmp_path, distill_loss='rkl')
    with pytest.raises(ValueError, match='alpha'):
        make_args(tmp_path, alpha=1.0)
    with pytest.raises(ValueError, match='calibrate'):
        make_args(tmp_path, calibrate='always')


def test_rouge_l_known_scores():
    # Identical up to case and punctuation; stems match (cats/cat,
    # running/run); nothing shared.
    assert rouge_l(['The Cat!'], [['the cat']]) == pytest.approx(100.0)
    assert rouge_l(['cats running'], [['cat run']]) == pytest.approx(100.0)
    assert rouge_l(['red fox'], [['blue whale']]) == 0.0
    # LCS "the cat on the mat": 5 of 6 tokens on both sides.
    assert rouge_l(['the cat sat on the mat'],
                   [['the cat is on the mat']]) == pytest.approx(500 / 6)
    # Best reference: LCS 3 of 4 and 4 (F 0.75) beats 1 of 4 and 2 (F 1/3).
    assert rouge_l(['a b c d'], [['a x', 'a b c e']]) == pytest.approx(75.0)
    # Unequal lengths: LCS 2, precision 2/2, recall 2/4, F = 2/3.
    assert rouge_l(['big dog'], [['the big brown dog']]) == \
        pytest.approx(200 / 3)
    # The mean over examples.
    assert rouge_l(['the cat sat on the mat', 'red fox', 'a b c d'],
                   [['the cat is on the mat'], ['blue whale'],
                    ['a x', 'a b c e']]) == \
        pytest.approx((500 / 6 + 0 + 75) / 3)
    with pytest.raises(ValueError, match='no reference'):
        rouge_l(['x'], [[]])


def test_batched_greedy_generation_matches_one_by_one(tokenizer, examples):
    model = U.tiny_gpt2(tokenizer, seed=3).eval()
    prompts = [example.prompt for example in examples[:3]]
    batched = generate_responses(
        model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    for prompt, response in zip(prompts, batched):
        ids = tokenizer(prompt, return_tensors='pt').input_ids
        with torch.no_grad():
            for _ in range(6):
                next_id = model(ids).logits[0, -1].argmax()
                if next_id == tokenizer.eos_token_id:
                    break
                ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
        prompt_length = len(tokenizer(prompt).input_ids)
        assert response == tokenizer.decode(
            ids[0, prompt_length:], skip_special_tokens=True).strip()
    assert tokenizer.padding_side == 'right'


def distill(teacher, student, train_file, out, *flags):
    """``tools/llm/distill.py`` on tiny models for a few CPU steps."""
    return load_tool('distill').main([
        '--teacher', teacher, '--student', student, '--train_file',
        train_file, '--output_dir',
        str(out), '--max_length', '96', '--max_prompt_length', '64',
        '--use_cpu', 'true', '--report_to', 'none', '--disable_tqdm', 'true',
        '--learning_rate', '1e-2', '--per_device_train_batch_size', '3',
        '--loss_chunk_size', '16', '--seed', '0', *flags
    ])


def logits_of(model, trainer):
    batch = trainer.data_collator([trainer.train_dataset[0]])
    inputs = {k: v for k, v in batch.items() if k != 'labels'}
    with torch.no_grad():
        return model.eval()(**inputs).logits


@pytest.mark.parametrize(
    'flags,error,message',
    [(['--max_length', '128'], ValueError,
      r'need 0 < --max_prompt_length < --max_length, got '
      r'--max_prompt_length 256 and --max_length 128'),
     (['--train_file', 'missing.jsonl'], FileNotFoundError,
      '--train_file missing.jsonl: no such file'),
     (['--eval_strategy', 'steps'], ValueError,
      '--eval_strategy steps needs an --eval_file'),
     (['--eval_file', 'TRAIN'], ValueError,
      'is scored at evaluations only: set --eval_strategy'),
     (['--lora_r', '-1'], ValueError, '--lora_r must be >= 0'),
     (['--train_file', 'BAD'], ValueError,
      'bad.jsonl: datasets cannot read it as json')])
def test_arguments_and_records_are_checked_before_any_model_loads(
        tmp_path, flags, error, message):
    train_file = U.write_jsonl(tmp_path / 'train.jsonl', U.RECORDS)
    bad = tmp_path / 'bad.jsonl'
    bad.write_text('{"instruction": \n')
    flags = [{
        'TRAIN': train_file,
        'BAD': str(bad)
    }.get(flag, flag) for flag in flags]
    # No model exists: a check made after loading would fail on the paths.
    missing = str(tmp_path / 'no_model')
    argv = [
        '--teacher', missing, '--student', missing, '--train_file',
        train_file, '--output_dir',
        str(tmp_path / 'out'), '--use_cpu', 'true', '--report_to', 'none'
    ]
    with pytest.raises(error, match=message):
        load_tool('distill').main(argv + flags)


def test_a_used_output_dir_is_refused_unless_overwritten(tmp_path, tokenizer):
    teacher, student = U.save_models(tmp_path, tokenizer)
    train_file = U.write_jsonl(tmp_path / 'train.jsonl', U.RECORDS)
    out = tmp_path / 'run'
    distill(teacher, student, train_file, out, '--max_steps', '2',
            '--save_strategy', 'no')
    weights = (out / 'model.safetensors').read_bytes()
    # Checked before a model is loaded: the student does not even exist.
    with pytest.raises(
            FileExistsError,
            match=r'--output_dir .*run is not empty \(.*model.safetensors'
            r'.*\); pass --overwrite_output_dir'):
        distill(teacher, str(tmp_path / 'no_model'), train_file, out,
                '--max_steps', '2')
    assert (out / 'model.safetensors').read_bytes() == weights
    # Overwriting while resuming a checkpoint in that folder is refused.
    with pytest.raises(ValueError, match='would remove '
                       '--resume_from_checkpoint'):
        distill(teacher, student, train_file, out, '--overwrite_output_dir',
                '--resume_from_checkpoint', str(out / 'checkpoint-2'))


def test_a_full_run_over_a_lora_run_leaves_no_adapters(tmp_path, tokenizer):
    teacher, student = U.save_models(tmp_path, tokenizer)
    train_file = U.write_jsonl(tmp_path / 'train.jsonl', U.RECORDS)
    out = tmp_path / 'run'
    distill(teacher, student, train_file, out, '--max_steps', '2',
            '--save_steps', '2', '--lora_r', '4', '--lora_target_modules',
            'c_attn')
    assert (out / 'adapter_model.safetensors').exists()
    assert (out / 'checkpoint-2').is_dir()
    # An adapter folder's positions are its base model's.
    assert max_positions(load_model_config(str(out))) == 128
    trainer = distill(teacher, student, train_file, out, '--max_steps', '3',
                      '--save_strategy', 'no', '--overwrite_output_dir')
    names = sorted(os.listdir(out))
    assert not [n for n in names if n.startswith(('adapter_', 'checkpoint-'))
                ], names
    # The folder loads as the full student just trained, nothing on top.
    reloaded = load_causal_lm(str(out))
    assert type(reloaded).__name__ == 'GPT2LMHeadModel'
    torch.testing.assert_close(
        logits_of(reloaded, trainer), logits_of(trainer.model, trainer))
    assert not torch.allclose(
        logits_of(reloaded, trainer),
        logits_of(AutoModelForCausalLM.from_pretrained(student), trainer))


def test_the_loader_refuses_weights_beside_adapters(tmp_path, tokenizer):
    folder = tmp_path / 'mixed'
    U.tiny_gpt2(tokenizer, 0).save_pretrained(folder)
    add_lora(U.tiny_gpt2(tokenizer, 0), 4,
             target_modules=['c_attn']).save_pretrained(folder)
    with pytest.raises(
            ValueError,
            match=r'holds a whole model \(model.safetensors\) and LoRA '
            r'adapters \(adapter_config.json, adapter_model.safetensors\)'):
        load_causal_lm(str(folder))


def test_the_run_records_its_arguments_and_log_and_eval_reads_them(
        tmp_path, recwarn):
    bos_tokenizer = U.build_tokenizer(U.record_texts(), bos=True)
    teacher, student = U.save_models(tmp_path, bos_tokenizer)
    train_file = U.write_jsonl(tmp_path / 'train.jsonl', U.RECORDS)
    out = tmp_path / 'run'
    trainer = distill(teacher, student, train_file, out, '--max_steps', '3',
                      '--logging_steps', '1', '--save_strategy', 'no',
                      '--tokenization', 'minillm')
    recorded = json.loads((out / 'distill_args.json').read_text())
    assert recorded['model_data']['tokenization'] == 'minillm'
    assert recorded['model_data']['max_length'] == 96
    assert recorded['model_data']['train_file'] == train_file
    assert recorded['training']['max_steps'] == 3
    # The log history is saved although no checkpoint is.
    state = json.loads((out / 'trainer_state.json').read_text())
    assert [h['loss'] for h in state['log_history'] if 'loss' in h] == [
        h['loss'] for h in trainer.state.log_history if 'loss' in h
    ] and len([h for h in state['log_history'] if 'loss' in h]) == 3
    assert not [n for n in os.listdir(out) if n.startswith('checkpoint-')]
    # eval_rouge.py prompts as in training unless told otherwise.
    examples = U.instruction_examples()
    expected = {
        tokenization: evaluate_rouge_l(trainer.model, bos_tokenizer,
                                       examples, 4, 8, None, tokenization)
        for tokenization in ('minillm', 'separate')
    }
    assert expected['minillm'][1] != expected['separate'][1]
    for flags, tokenization in (([], 'minillm'),
                                (['--tokenization', 'separate'], 'separate')):
        output = tmp_path / f'rouge_{tokenization}.json'
        scores = load_tool('eval_rouge').main([
            str(out), train_file, '--max-new-tokens', '4', '--output',
            str(output), *flags
        ])
        saved = json.loads(output.read_text())
        assert saved['tokenization'] == tokenization
        assert saved['results'][train_file]['responses'] == \
            expected[tokenization][1]
        assert scores[train_file] == pytest.approx(expected[tokenization][0])
    conflicts = [str(w.message) for w in recwarn if 'differs' in
                 str(w.message)]
    assert len(conflicts) == 1 and "--tokenization separate differs from " \
        "'minillm', which the model was trained with" in conflicts[0]
