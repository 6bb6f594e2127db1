"""LoCaDistillTrainer at scale: fused loss, accumulation, padding, LoRA.

Tiny GPT-2 and Llama models with random weights and a word-level tokenizer
built here; no network.
"""
import os

os.environ['HF_HUB_OFFLINE'] = '1'

import _llm_utils as U  # noqa: E402  (imports loca_mm before transformers)
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import GPT2LMHeadModel, TrainerCallback  # noqa: E402

from test_llm_distill import make_args  # noqa: E402

from loca_mm import functional as LF  # noqa: E402
from loca_mm.integrations.hf_models import add_lora  # noqa: E402
from loca_mm.integrations.instruction_data import (  # noqa: E402
    IGNORE_INDEX, InstructionDataset, ResponseOnlyCollator)
from loca_mm.integrations.instruction_eval import (  # noqa: E402
    RougeLMetric, evaluate_rouge_l)
from loca_mm.integrations.transformers import (  # noqa: E402
    LoCaDistillArguments, LoCaDistillTrainer, response_token_loss)

BUILDERS = {'gpt2': U.tiny_gpt2, 'llama': U.tiny_llama}


@pytest.fixture(scope='module')
def tokenizer():
    return U.build_tokenizer(U.record_texts())


@pytest.fixture(scope='module')
def dataset(tokenizer):
    return InstructionDataset(U.instruction_examples(), tokenizer, 96, 64)


def make_trainer(tmp_path,
                 tokenizer,
                 dataset,
                 arch='gpt2',
                 student=None,
                 **overrides):
    # Chunks of 7 response tokens in blocks of 3.
    settings = dict(
        loss_chunk_size=7, loss_block_size=3, ce_weight=0.3, kd_weight=0.7)
    settings.update(overrides)
    return LoCaDistillTrainer(
        model=student or BUILDERS[arch](tokenizer, seed=0),
        teacher_model=BUILDERS[arch](tokenizer, seed=1),
        args=make_args(tmp_path, **settings),
        train_dataset=dataset,
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        teacher_processing_class=tokenizer)


def batch_of(trainer, indices):
    return trainer.data_collator([trainer.train_dataset[i] for i in indices])


def loss_of_model_logits(trainer, batch):
    """The materialised loss of the models' own logits."""
    model_inputs = {k: v for k, v in batch.items() if k != 'labels'}
    with torch.no_grad():
        return response_token_loss(
            trainer.model(**model_inputs).logits,
            trainer.teacher_model(**model_inputs).logits, batch['labels'],
            trainer.distill_fn, 0.3, 0.7).loss


def loss_and_grads(trainer, batch, **kwargs):
    model = trainer.model
    model.train()
    model.zero_grad()
    loss = trainer.compute_loss(model, batch, **kwargs)
    loss.backward()
    grads = {
        name: param.grad.clone()
        for name, param in model.named_parameters() if param.grad is not None
    }
    return loss.detach(), grads


@pytest.mark.parametrize('arch,loss_args', [
    ('gpt2', {}),
    ('gpt2', dict(distill_loss='dkd', calibrate='none')),
    ('llama', dict(divergence='jsd', beta=0.3, tau=2.0)),
    ('llama', dict(divergence='srkl', calibrate='margin')),
])
def test_fused_and_materialised_paths_agree(tmp_path, tokenizer, dataset, arch,
                                            loss_args, monkeypatch):
    fused = make_trainer(tmp_path, tokenizer, dataset, arch, **loss_args)
    plain = make_trainer(
        tmp_path, tokenizer, dataset, arch, fused_loss=False, **loss_args)
    batch = batch_of(fused, (0, 2, 3))
    sizes = []
    fused_loss = LF.fused_linear_distill_loss

    def spy(*args, chunk_size, block_size, **kwargs):
        sizes.append((chunk_size, block_size))
        return fused_loss(
            *args, chunk_size=chunk_size, block_size=block_size, **kwargs)

    monkeypatch.setattr(LF, 'fused_linear_distill_loss', spy)
    loss, grads = loss_and_grads(fused, batch)
    assert fused.fused_off_reason is None and sizes == [(7, 3)]
    loss_ref, grads_ref = loss_and_grads(plain, batch)
    assert plain.fused_off_reason == 'fused_loss=False'
    torch.testing.assert_close(loss, loss_ref)
    assert grads.keys() == grads_ref.keys() and len(grads) > 5
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], msg=name)
    # The materialised path is the loss of the model's own logits.
    torch.testing.assert_close(loss_ref, loss_of_model_logits(plain, batch))


class HalvedLogitsGPT2(GPT2LMHeadModel):
    """A model whose logits are not its output layer's (as soft-capping)."""

    def forward(self, *args, logits_to_keep=0, **kwargs):
        outputs = super().forward(
            *args, logits_to_keep=logits_to_keep, **kwargs)
        outputs.logits = outputs.logits / 2
        return outputs


def test_models_the_fused_loss_cannot_reproduce_fall_back(
        tmp_path, tokenizer, dataset, caplog):
    config = U.tiny_gpt2(tokenizer, seed=0).config
    torch.manual_seed(0)
    trainer = make_trainer(
        tmp_path, tokenizer, dataset, student=HalvedLogitsGPT2(config))
    batch = batch_of(trainer, (0, 1))
    loss = trainer.compute_loss(trainer.model, batch)
    assert 'student\'s logits are not its output layer' in \
        trainer.fused_off_reason
    torch.testing.assert_close(loss, loss_of_model_logits(trainer, batch))
    # A custom head and a logit transform in the config are recognised
    # before any forward pass.
    custom = make_trainer(tmp_path, tokenizer, dataset)
    custom.model.lm_head = type('ScaledHead', (torch.nn.Linear, ),
                                {})(32, len(tokenizer), bias=False)
    custom.compute_loss(custom.model, batch)
    assert custom.fused_off_reason == ("the student's output layer is "
                                       'ScaledHead, not a torch.nn.Linear')
    capped = make_trainer(tmp_path, tokenizer, dataset)
    capped.teacher_model.config.final_logit_softcapping = 30.0
    capped.compute_loss(capped.model, batch)
    assert 'teacher\'s config sets final_logit_softcapping=30.0' in \
        capped.fused_off_reason


def response_tokens(batch):
    return int((batch['labels'][:, 1:] != IGNORE_INDEX).sum())


@pytest.mark.parametrize('fused', [True, False])
def test_accumulated_micro_batches_give_gradient_of_concatenation(
        tmp_path, tokenizer, dataset, fused):
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        dataset,
        fused_loss=fused,
        gradient_accumulation_steps=2)
    short, long = (3, ), (2, 4, 0)
    first, second = batch_of(trainer, short), batch_of(trainer, long)
    assert response_tokens(first) * 3 < response_tokens(second)
    total = response_tokens(first) + response_tokens(second)
    model = trainer.model
    model.train()
    model.zero_grad()
    for batch in (first, second):
        trainer.training_step(model, batch, torch.tensor(total))
    accumulated = {n: p.grad.clone() for n, p in model.named_parameters()}
    _, whole = loss_and_grads(trainer, batch_of(trainer, short + long))
    for name, grad in whole.items():
        torch.testing.assert_close(accumulated[name], grad, msg=name)


def test_trainer_passes_the_accumulated_token_count(tmp_path, tokenizer,
                                                    dataset):
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        dataset,
        max_steps=1,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2)
    seen = []
    compute_loss = trainer.compute_loss

    def spy(model, inputs, return_outputs=False, num_items_in_batch=None):
        seen.append((response_tokens(inputs), num_items_in_batch))
        return compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer.compute_loss = spy
    trainer.train()
    assert len(seen) == 2
    assert all(int(count) == seen[0][0] + seen[1][0] for _, count in seen)


def test_left_padding_gives_the_loss_of_right_padding(tmp_path, tokenizer,
                                                      dataset):
    trainer = make_trainer(tmp_path, tokenizer, dataset)
    right = batch_of(trainer, (0, 3, 2))
    lengths = right['attention_mask'].sum(-1)
    left = {key: torch.empty_like(value) for key, value in right.items()}
    fill = {
        'input_ids': tokenizer.pad_token_id,
        'attention_mask': 0,
        'labels': IGNORE_INDEX
    }
    width = right['input_ids'].shape[1]
    for key, value in right.items():
        for row, size in enumerate(lengths.tolist()):
            left[key][row] = fill[key]
            left[key][row, width - size:] = value[row, :size]
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.compute_loss(trainer.model, right)
        assert torch.isfinite(expected)
        torch.testing.assert_close(
            trainer.compute_loss(trainer.model, left), expected)


def test_batches_longer_than_the_positions_are_refused(tmp_path, tokenizer,
                                                       dataset):
    trainer = make_trainer(tmp_path, tokenizer, dataset)
    batch = {
        'input_ids': torch.zeros(1, 129, dtype=torch.long),
        'attention_mask': torch.ones(1, 129, dtype=torch.long),
        'labels': torch.zeros(1, 129, dtype=torch.long)
    }
    with pytest.raises(
            ValueError,
            match='129 tokens per row needs 129 '
            'positions but GPT2LMHeadModel embeds only 128'):
        trainer.compute_loss(trainer.model, batch)


def test_lora_student_trains_adapters_only(tmp_path, tokenizer, dataset):
    base = U.tiny_gpt2(tokenizer, seed=0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    student = add_lora(base, r=4, target_modules=['c_attn'])
    adapters_before = {
        name: param.detach().clone()
        for name, param in student.named_parameters() if param.requires_grad
    }
    assert adapters_before and all('lora_' in n for n in adapters_before)
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        dataset,
        student=student,
        max_steps=2,
        learning_rate=1e-2)
    trainer.train()
    assert trainer.fused_off_reason is None
    for name, param in student.named_parameters():
        if name in adapters_before:
            assert not torch.equal(param, adapters_before[name]), name
    merged_off = student.get_base_model()
    for name, value in merged_off.state_dict().items():
        if 'lora_' in name:
            continue
        key = name.replace('.base_layer', '')
        assert torch.equal(value, before[key]), name


def test_divergence_settings_are_checked(tmp_path):
    common = dict(output_dir=str(tmp_path), report_to='none')
    with pytest.raises(
            ValueError, match="divergence='rkl' needs "
            'distill_loss=kd'):
        LoCaDistillArguments(distill_loss='dkd', divergence='rkl', **common)
    with pytest.raises(ValueError, match='divergence must be one of'):
        LoCaDistillArguments(divergence='tvd', **common)
    with pytest.raises(ValueError, match=r'beta must lie in \[0, 1\]'):
        LoCaDistillArguments(divergence='jsd', beta=2.0, **common)
    with pytest.raises(ValueError, match=r'skew must lie in \[0, 1\)'):
        LoCaDistillArguments(divergence='skl', skew=1.0, **common)
    with pytest.raises(ValueError, match='loss_block_size must be >= 1, got 0'):
        LoCaDistillArguments(loss_block_size=0, **common)
    jsd = LoCaDistillArguments(divergence='jsd', beta=0.2, **common)
    assert jsd.distill_function().keywords['beta'] == 0.2


def test_fused_loss_through_a_ddp_wrapper(tmp_path, tokenizer, dataset):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    reference = make_trainer(tmp_path, tokenizer, dataset)
    batch = batch_of(reference, (0, 2))
    loss_ref, grads_ref = loss_and_grads(reference, batch)
    trainer = make_trainer(tmp_path, tokenizer, dataset)
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    wrapped = None
    try:
        wrapped = DistributedDataParallel(trainer.model)
        wrapped.train()
        loss = trainer.compute_loss(wrapped, batch)
        loss.backward()
        loss = loss.detach()  # nor does its graph outlive the group
    finally:
        # The wrapper goes while its process group lives: freed after
        # destroy_process_group, its reducer was the group's last owner, and
        # the group's destructor once hung joining its gloo threads.
        del wrapped
        dist.destroy_process_group()
    assert trainer.fused_off_reason is None
    torch.testing.assert_close(loss.detach(), loss_ref)
    for name, param in trainer.model.named_parameters():
        torch.testing.assert_close(param.grad, grads_ref[name], msg=name)


def test_dtype_flags_and_a_bfloat16_teacher(tmp_path, tokenizer, dataset):
    from loca_mm.integrations.hf_models import load_causal_lm
    U.tiny_gpt2(tokenizer, seed=1).save_pretrained(tmp_path / 'teacher')
    teacher = load_causal_lm(str(tmp_path / 'teacher'), 'bfloat16')
    assert {p.dtype for p in teacher.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="dtype must be one of.*'fp8'"):
        load_causal_lm(str(tmp_path / 'teacher'), 'fp8')
    # A float32 student with the bfloat16 teacher: the fused loss equals
    # the materialised one (both see the teacher's bfloat16 logits).
    trainers = [
        make_trainer(tmp_path, tokenizer, dataset, fused_loss=fused)
        for fused in (True, False)
    ]
    for trainer in trainers:
        trainer.teacher_model.to(torch.bfloat16)
    batch = batch_of(trainers[0], (0, 2))
    (loss, grads), (loss_ref, grads_ref) = (loss_and_grads(t, batch)
                                            for t in trainers)
    assert trainers[0].fused_off_reason is None
    torch.testing.assert_close(loss, loss_ref)
    for name in grads_ref:
        torch.testing.assert_close(grads[name], grads_ref[name], msg=name)


def test_generation_metrics_are_logged_with_the_evaluation(
        tmp_path, tokenizer, dataset):
    seen = []

    class Recorder(TrainerCallback):

        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs))

    examples = U.instruction_examples()[:3]
    trainer = LoCaDistillTrainer(
        model=U.tiny_gpt2(tokenizer, seed=0),
        teacher_model=U.tiny_gpt2(tokenizer, seed=1),
        args=make_args(tmp_path),
        train_dataset=dataset,
        eval_dataset=dataset,
        generation_metrics={'rougeL': RougeLMetric(examples, 6)},
        callbacks=[Recorder()],
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id),
        processing_class=tokenizer)
    expected, _ = evaluate_rouge_l(trainer.model, tokenizer, examples, 6)
    metrics = trainer.evaluate()
    assert metrics['eval_rougeL'] == pytest.approx(expected)
    assert seen[-1]['eval_rougeL'] == metrics['eval_rougeL']
    assert trainer.state.log_history[-1]['eval_rougeL'] == \
        metrics['eval_rougeL']
    # Only evaluations of the eval set get it, not predictions.
    assert 'test_rougeL' not in trainer.predict(dataset).metrics
    with pytest.raises(ValueError, match='need the tokenizer'):
        LoCaDistillTrainer(
            model=U.tiny_gpt2(tokenizer, seed=0),
            teacher_model=U.tiny_gpt2(tokenizer, seed=1),
            args=make_args(tmp_path),
            generation_metrics={'rougeL': RougeLMetric(examples)})
