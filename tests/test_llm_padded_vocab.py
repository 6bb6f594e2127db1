"""A teacher and a student that share a tokenizer but whose output layers
are padded to different widths (as Qwen2.5's 151,936 and 152,064 rows).
Tiny GPT-2 models and a word-level tokenizer built here; no network."""
import logging
import os

os.environ['HF_HUB_OFFLINE'] = '1'

import _llm_utils as U  # noqa: E402  (imports loca_mm before transformers)
import pytest  # noqa: E402
import torch  # noqa: E402

from test_llm_distill import make_args  # noqa: E402
# The word-level tokenizer and the instruction records, as fixtures.
from test_llm_trainer import dataset, tokenizer  # noqa: E402,F401

from loca_mm.integrations.instruction_data import (  # noqa: E402
    ResponseOnlyCollator)
from loca_mm.integrations.transformers import (  # noqa: E402
    LoCaDistillTrainer, response_token_loss)

# Rows beyond the tokenizer's vocabulary in each output layer.
TEACHER_PADDING, STUDENT_PADDING = 13, 5
NOTE = "the output layers are padded beyond the tokenizer's"


def padded_trainer(tmp_path, tokenizer, dataset, **overrides):
    settings = dict(
        loss_chunk_size=7,
        loss_block_size=3,
        ce_weight=0.3,
        kd_weight=0.7,
        max_steps=2,
        logging_steps=1,
        learning_rate=1e-2)
    settings.update(overrides)
    vocabulary = len(tokenizer)
    return LoCaDistillTrainer(
        model=U.tiny_gpt2(tokenizer, 0, vocabulary + STUDENT_PADDING),
        teacher_model=U.tiny_gpt2(tokenizer, 1, vocabulary + TEACHER_PADDING),
        args=make_args(tmp_path, **settings),
        train_dataset=dataset,
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        teacher_processing_class=tokenizer)


def vocabulary_loss(trainer, batch, vocabulary):
    """The materialised loss of the models' logits cut to the vocabulary."""
    inputs = {k: v for k, v in batch.items() if k != 'labels'}
    student = trainer.model(**inputs).logits
    with torch.no_grad():
        teacher = trainer.teacher_model(**inputs).logits
    return response_token_loss(student[..., :vocabulary],
                               teacher[..., :vocabulary], batch['labels'],
                               trainer.distill_fn, 0.3, 0.7).loss


@pytest.mark.parametrize('fused', [True, False])
def test_padded_output_layers_train_on_the_vocabulary_rows(
        tmp_path, tokenizer, dataset, fused, caplog):
    vocabulary = len(tokenizer)
    with caplog.at_level(logging.WARNING):
        trainer = padded_trainer(
            tmp_path, tokenizer, dataset, fused_loss=fused)
        assert trainer.num_classes == vocabulary
        batch = trainer.data_collator([dataset[i] for i in (0, 2, 4)])
        model = trainer.model.train()
        loss = trainer.compute_loss(model, batch)
        assert (trainer.fused_off_reason is None) == fused
        loss.backward()
        # The padding rows take no part: no gradient reaches them.
        head = model.get_output_embeddings().weight
        assert head.shape[0] == vocabulary + STUDENT_PADDING
        assert torch.count_nonzero(head.grad[vocabulary:]) == 0
        assert torch.count_nonzero(head.grad[:vocabulary]) > 0
        model.zero_grad()
        expected = vocabulary_loss(trainer, batch, vocabulary)
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        trainer.train()
    losses = [h['loss'] for h in trainer.state.log_history if 'loss' in h]
    assert len(losses) == 2 and all(0 < x < 100 for x in losses)
    notes = [r.getMessage() for r in caplog.records if NOTE in r.getMessage()]
    assert notes == [
        f"LoCaDistillTrainer: {NOTE} {vocabulary} tokens (teacher "
        f'{vocabulary + TEACHER_PADDING} rows, student '
        f'{vocabulary + STUDENT_PADDING}); the loss compares the first '
        f'{vocabulary} logits and leaves the padding rows out'
    ]


def test_equal_widths_keep_every_row(tmp_path, tokenizer, dataset):
    trainer = LoCaDistillTrainer(
        model=U.tiny_gpt2(tokenizer, 0, len(tokenizer) + 4),
        teacher_model=U.tiny_gpt2(tokenizer, 1, len(tokenizer) + 4),
        args=make_args(tmp_path),
        train_dataset=dataset,
        processing_class=tokenizer,
        teacher_processing_class=tokenizer)
    assert trainer.num_classes is None


def test_a_real_vocabulary_mismatch_is_still_refused(tmp_path, tokenizer,
                                                     dataset):
    vocabulary = len(tokenizer)
    common = dict(args=make_args(tmp_path), train_dataset=dataset)
    teacher = U.tiny_gpt2(tokenizer, 1, vocabulary + TEACHER_PADDING)
    # Without the teacher's tokenizer the extra rows cannot be told apart
    # from tokens of a larger vocabulary.
    with pytest.raises(
            ValueError,
            match=rf'share one vocabulary: the teacher predicts '
            rf'{vocabulary + TEACHER_PADDING} tokens, the student '
            rf'{vocabulary}\. Output layers padded'):
        LoCaDistillTrainer(
            model=U.tiny_gpt2(tokenizer, 0),
            teacher_model=teacher,
            processing_class=tokenizer,
            **common)
    # A teacher tokenizer with more tokens: the same ids mean other tokens.
    larger = U.build_tokenizer(
        U.record_texts(), extra_words=['zebra', 'quokka'])
    with pytest.raises(ValueError, match='tokenizers differ'):
        LoCaDistillTrainer(
            model=U.tiny_gpt2(tokenizer, 0),
            teacher_model=teacher,
            processing_class=tokenizer,
            teacher_processing_class=larger,
            **common)
    # A model narrower than the tokenizer cannot predict all its tokens.
    with pytest.raises(
            ValueError,
            match=rf'the tokenizer has {vocabulary} tokens but the student '
            r'predicts only 10'):
        LoCaDistillTrainer(
            model=U.tiny_gpt2(tokenizer, 0, vocab_size=10),
            teacher_model=teacher,
            processing_class=tokenizer,
            teacher_processing_class=tokenizer,
            **common)
