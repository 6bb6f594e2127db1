"""LoCaGKDTrainer against TRL's own GKDTrainer, on tiny GPT-2 models and a
word-level chat tokenizer built here; no network."""
import copy
import os

os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('TRL_EXPERIMENTAL_SILENCE', '1')

import _llm_utils as U  # noqa: E402  (imports loca_mm before transformers)
import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl.experimental.gkd import GKDConfig, GKDTrainer  # noqa: E402

from loca_mm import functional as LF  # noqa: E402
from loca_mm.integrations.trl import (  # noqa: E402
    LoCaGKDConfig, LoCaGKDTrainer)

# Three conversations: one batch holds them all, whatever the shuffling.
BATCH = 3


@pytest.fixture(scope='module')
def tokenizer():
    return U.chat_tokenizer()


@pytest.fixture(scope='module')
def chats():
    return Dataset.from_list(U.chat_records()[:BATCH])


def gkd_settings(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=BATCH,
        max_new_tokens=4,
        lmbda=0.0,
        beta=0.5,
        max_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        report_to=[],
        save_strategy='no',
        use_cpu=True,
        seed=0)
    settings.update(overrides)
    return settings


def make_trainer(tmp_path, tokenizer, chats, trainer_cls=LoCaGKDTrainer,
                 student=None, teacher=None, **overrides):
    config_cls = LoCaGKDConfig if trainer_cls is LoCaGKDTrainer else GKDConfig
    return trainer_cls(
        model=student or U.tiny_gpt2(tokenizer, seed=0),
        teacher_model=teacher or U.tiny_gpt2(tokenizer, seed=1),
        args=config_cls(**gkd_settings(tmp_path, **overrides)),
        train_dataset=chats,
        processing_class=tokenizer)


def ground_truth_batch(trainer):
    batch = trainer.data_collator(list(trainer.train_dataset))
    return trainer._prepare_inputs(batch)


def fitted_teacher(tokenizer, batch, steps=4):
    """A teacher trained a few steps on the batch: it ranks some labels
    first (LoCa leaves those alone) and not others."""
    teacher = U.tiny_gpt2(tokenizer, seed=1)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        teacher(**batch).loss.backward()
        optimizer.step()
    return teacher.eval()


def loca_reference(trainer, batch, calibrate):
    """loca_mm's generalized JSD on the two models' shifted logits."""
    with torch.no_grad():
        student = trainer.model(
            input_ids=batch['input_ids'],
            attention_mask=batch['attention_mask']).logits
        teacher = trainer.teacher_model(
            input_ids=batch['input_ids'],
            attention_mask=batch['attention_mask']).logits
    return LF.generalized_jsd_loss(
        student[:, :-1],
        teacher[:, :-1],
        batch['labels'][:, 1:],
        1.0,
        0.9,
        calibrate,
        beta=trainer.args.beta,
        ignore_index=-100)


@pytest.mark.parametrize('beta', [0.0, 0.5, 1.0])
def test_without_calibration_the_loss_is_trls(tmp_path, tokenizer, chats,
                                              beta):
    ours = make_trainer(
        tmp_path / 'loca', tokenizer, chats, calibrate='none', beta=beta)
    trls = make_trainer(
        tmp_path / 'trl', tokenizer, chats, trainer_cls=GKDTrainer, beta=beta)
    batch = ground_truth_batch(ours)
    assert (batch['labels'] != -100).sum() > 10
    with torch.no_grad():
        for num_items in (None, 40):
            expected = trls.compute_loss(
                trls.model, batch, num_items_in_batch=num_items)
            got = ours.compute_loss(
                ours.model, batch, num_items_in_batch=num_items)
            assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert ours._loca_stats is None


def test_ground_truth_batches_meet_the_loca_teacher(tmp_path, tokenizer,
                                                    chats):
    trainer = make_trainer(tmp_path, tokenizer, chats, calibrate='wrong')
    batch = ground_truth_batch(trainer)
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, batch)
    expected = loca_reference(trainer, batch, 'wrong')
    plain = loca_reference(trainer, batch, 'none')
    assert got.item() == pytest.approx(expected.loss.item(), rel=1e-6)
    # A random teacher rarely ranks the label first: LoCa changes it, and
    # the loss with it.
    assert expected.calibrated.sum() > 5
    assert abs(got.item() - plain.loss.item()) > 1e-3


@pytest.mark.parametrize('sampler', [
    dict(lmbda=1.0),  # the student samples every batch
    dict(lmbda=0.0, seq_kd=True),  # the teacher does
])
def test_sampled_batches_are_not_calibrated(tmp_path, tokenizer, chats,
                                            sampler):
    """Labels sampled by the student (lmbda) or the teacher (seq_kd) are no
    ground truth: the loss is the plain GKD loss on them, and no LoCa
    statistics are gathered."""
    student = U.tiny_gpt2(tokenizer, seed=0)
    losses, generated = {}, {}
    for calibrate in ('wrong', 'none'):
        trainer = make_trainer(
            tmp_path / calibrate,
            tokenizer,
            chats,
            student=copy.deepcopy(student),
            calibrate=calibrate,
            **sampler)
        batch = ground_truth_batch(trainer)
        ground_truth = batch['labels'].clone()
        trainer.current_gradient_accumulation_steps = 1  # set by train()
        torch.manual_seed(7)  # the same samples for both trainers
        losses[calibrate] = trainer.training_step(trainer.model, batch)
        generated[calibrate] = batch['labels']
        assert trainer._loca_stats is None
    assert not torch.equal(generated['wrong'], ground_truth)
    assert torch.equal(generated['wrong'], generated['none'])
    assert losses['wrong'].item() == pytest.approx(
        losses['none'].item(), rel=1e-6)


def test_loca_ratio_is_logged_for_ground_truth_batches(tmp_path, tokenizer,
                                                       chats):
    plain = make_trainer(tmp_path, tokenizer, chats, calibrate='none')
    batch = {
        key: ground_truth_batch(plain)[key]
        for key in ('input_ids', 'attention_mask', 'labels')
    }
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        chats,
        teacher=fitted_teacher(tokenizer, batch),
        calibrate='wrong')
    # The teacher and the labels fix which tokens LoCa corrects.
    expected = LF.calibration_summary(
        LF.calibration_counts(loca_reference(trainer, batch, 'wrong')))
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if 'loss' in entry]
    assert len(steps) == 2
    for entry in steps:
        assert entry['loca_ratio'] == pytest.approx(expected['loca_ratio'])
        assert entry['loca_scale'] == pytest.approx(
            expected['loca_scale'], rel=1e-5)
    assert 0.2 < expected['loca_ratio'] < 0.8


def test_on_policy_training_logs_no_loca_ratio(tmp_path, tokenizer, chats):
    trainer = make_trainer(
        tmp_path, tokenizer, chats, calibrate='wrong', lmbda=1.0, max_steps=1)
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if 'loss' in entry]
    assert steps and all('loca_ratio' not in entry for entry in steps)


def test_config_checks_loca_settings(tmp_path):
    with pytest.raises(ValueError, match='alpha'):
        LoCaGKDConfig(**gkd_settings(tmp_path, alpha=1.5))
    with pytest.raises(ValueError, match='calibrate'):
        LoCaGKDConfig(**gkd_settings(tmp_path, calibrate='sometimes'))


def test_trainer_refuses_a_plain_gkd_config(tmp_path, tokenizer, chats):
    with pytest.raises(TypeError, match='LoCaGKDConfig'):
        LoCaGKDTrainer(
            model=U.tiny_gpt2(tokenizer, seed=0),
            teacher_model=U.tiny_gpt2(tokenizer, seed=1),
            args=GKDConfig(**gkd_settings(tmp_path)),
            train_dataset=chats,
            processing_class=tokenizer)
