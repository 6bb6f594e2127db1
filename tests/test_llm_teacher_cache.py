"""Offline distillation from a cached teacher: cache_teacher.py, then
distill.py --teacher_cache, without the teacher."""
import os

os.environ['HF_HUB_OFFLINE'] = '1'

import _llm_utils as U  # noqa: E402  (imports loca_mm before transformers)
import pytest  # noqa: E402
import torch  # noqa: E402
from _support import load_tool  # noqa: E402

from loca_mm.integrations.instruction_data import (  # noqa: E402
    InstructionDataset, ResponseOnlyCollator)
from loca_mm.integrations.teacher_cache import (  # noqa: E402
    LoCaCachedTeacherTrainer, TeacherCacheCollator, TeacherCacheDataset)
from loca_mm.integrations.transformers import (  # noqa: E402
    LoCaDistillArguments, LoCaDistillTrainer)


@pytest.fixture(scope='module')
def tokenizer():
    return U.build_tokenizer(U.record_texts())


def make_cache(tmp_path, tokenizer, top_k, tau=2.0, name='cache.parquet'):
    teacher_dir, _ = U.save_models(tmp_path, tokenizer)
    train_file = U.write_jsonl(tmp_path / 'train.jsonl', U.RECORDS)
    path = str(tmp_path / name)
    load_tool('llm/cache_teacher.py').main([
        '--teacher', teacher_dir, '--train_file', train_file, '--output',
        path, '--top_k',
        str(top_k), '--tau',
        str(tau), '--max_length', '96', '--max_prompt_length', '64'
    ])
    return path


def args(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path / 'out'), use_cpu=True, report_to='none',
        disable_tqdm=True, save_strategy='no', tau=2.0, alpha=0.8,
        calibrate='margin', loss_chunk_size=16)
    settings.update(overrides)
    return LoCaDistillArguments(**settings)


@pytest.mark.parametrize('name', ['cache.parquet', 'cache.jsonl'])
def test_full_vocabulary_cache_trains_as_the_online_teacher(
        tmp_path, tokenizer, name):
    cache = make_cache(tmp_path, tokenizer, len(tokenizer), name=name)
    dataset = TeacherCacheDataset(cache, tau=2.0, vocab_size=len(tokenizer))
    offline = LoCaCachedTeacherTrainer(
        model=U.tiny_gpt2(tokenizer, seed=0), args=args(tmp_path),
        train_dataset=dataset,
        data_collator=TeacherCacheCollator(tokenizer.pad_token_id))
    online = LoCaDistillTrainer(
        model=U.tiny_gpt2(tokenizer, seed=0),
        teacher_model=U.tiny_gpt2(tokenizer, seed=1), args=args(tmp_path),
        train_dataset=InstructionDataset(U.instruction_examples(), tokenizer,
                                         96, 64),
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id),
        processing_class=tokenizer, teacher_processing_class=tokenizer)
    rows = (0, 2, 4)
    batch_online = online.data_collator(
        [online.train_dataset[i] for i in rows])
    batch_offline = offline.data_collator([dataset[i] for i in rows])
    assert torch.equal(batch_offline['input_ids'], batch_online['input_ids'])
    losses, grads = [], []
    for trainer, batch in ((online, batch_online), (offline, batch_offline)):
        trainer.model.train()
        loss = trainer.compute_loss(trainer.model, batch)
        losses.append(loss)
        grads.append(
            torch.autograd.grad(loss, list(trainer.model.parameters())))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for offline_grad, online_grad in zip(grads[1], grads[0]):
        torch.testing.assert_close(offline_grad, online_grad, rtol=1e-4,
                                   atol=1e-6)


def test_distill_tool_trains_from_a_cache_without_a_teacher(
        tmp_path, tokenizer):
    cache = make_cache(tmp_path, tokenizer, 4)
    student_dir = str(tmp_path / 'student')
    trainer = load_tool('llm/distill.py').main([
        '--student', student_dir, '--teacher_cache', cache, '--output_dir',
        str(tmp_path / 'run'), '--tau', '2.0', '--use_cpu', 'true',
        '--report_to', 'none', '--disable_tqdm', 'true', '--max_steps', '6',
        '--learning_rate', '1e-2', '--per_device_train_batch_size', '3',
        '--logging_steps', '2', '--seed', '0'
    ])
    assert not hasattr(trainer, 'teacher_model')
    logs = [h for h in trainer.state.log_history if 'loss' in h]
    losses = [h['loss'] for h in logs]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert all(0.0 <= h['loca_ratio'] <= 1.0 for h in logs)
    assert (tmp_path / 'run' / 'model.safetensors').is_file()


def test_a_cache_is_refused_at_another_temperature(tmp_path, tokenizer):
    cache = make_cache(tmp_path, tokenizer, 4, tau=2.0)
    with pytest.raises(ValueError, match='made at tau=2.0, the loss uses'):
        TeacherCacheDataset(cache, tau=1.0)
    with pytest.raises(ValueError, match='logits, the student predicts 7'):
        TeacherCacheDataset(cache, tau=2.0, vocab_size=7)
    with pytest.raises(ValueError, match='forward KL only'):
        LoCaCachedTeacherTrainer(
            model=U.tiny_gpt2(tokenizer, seed=0),
            args=args(tmp_path, divergence='rkl'),
            train_dataset=TeacherCacheDataset(cache, tau=2.0))
