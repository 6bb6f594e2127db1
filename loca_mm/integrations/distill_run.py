"""A distillation run from its settings: models, data, trainer
(what ``tools/llm/distill.py`` does after parsing its arguments)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .hf_models import (DTYPES, add_lora, check_length_fits, load_causal_lm,
                        load_tokenizer)
from .instruction_data import (TOKENIZATIONS, InstructionDataset,
                               ResponseOnlyCollator, check_tokenization,
                               load_instruction_jsonl)
from .instruction_eval import RougeLCallback
from .transformers import LoCaDistillArguments, LoCaDistillTrainer


@dataclass
class ModelDataArguments:
    """Models and data of a distillation run."""
    teacher: str = field(
        metadata={'help': 'teacher causal LM: local directory or Hub name'})
    student: str = field(
        metadata={'help': 'student causal LM: local directory or Hub name'})
    train_file: str = field(
        metadata={'help': 'training records, Dolly or MiniLLM JSONL'})
    eval_file: Optional[str] = field(
        default=None,
        metadata={
            'help':
            'validation records: evaluation loss and ROUGE-L (eval_rougeL) '
            'at every evaluation (set --eval_strategy; pick the best '
            'checkpoint with --metric_for_best_model rougeL '
            '--load_best_model_at_end true)'
        })
    rouge_limit: Optional[int] = field(
        default=None,
        metadata={'help': 'ROUGE-L on the first N validation records only'})
    rouge_max_new_tokens: int = field(
        default=256, metadata={'help': 'generation cap for ROUGE-L'})
    max_length: int = field(
        default=512, metadata={'help': 'cap on prompt + response tokens'})
    max_prompt_length: int = field(
        default=256,
        metadata={'help': 'records with longer prompts are dropped'})
    tokenization: str = field(
        default='separate',
        metadata={
            'help':
            "'separate': prompt with the tokenizer's special tokens, "
            "response on its own; 'minillm': as MiniLLM (no BOS, the "
            'response cut from the encoding of prompt + response)',
            'choices':
            TOKENIZATIONS
        })
    student_dtype: str = field(
        default='float32',
        metadata={
            'help': 'precision of the student weights',
            'choices': tuple(DTYPES)
        })
    teacher_dtype: str = field(
        default='float32',
        metadata={
            'help': 'precision of the frozen teacher',
            'choices': tuple(DTYPES)
        })
    lora_r: int = field(
        default=0,
        metadata={
            'help':
            'train LoRA adapters of this rank instead of the whole '
            'student (0: off; needs peft)'
        })
    lora_alpha: float = field(
        default=16.0, metadata={'help': "LoRA's scaling numerator"})
    lora_dropout: float = field(
        default=0.05, metadata={'help': "dropout on the adapters' input"})
    lora_target_modules: Optional[list[str]] = field(
        default=None,
        metadata={
            'help':
            "layers to adapt (default: peft's choice for the "
            'architecture, the attention projections)'
        })

    def __post_init__(self) -> None:
        check_tokenization(self.tokenization)
        if self.lora_r < 0:
            raise ValueError(f'lora_r must be >= 0, got {self.lora_r!r}')
        if self.rouge_limit is not None and self.eval_file is None:
            raise ValueError('rouge_limit needs an eval_file')


def build_distill_trainer(data_args: ModelDataArguments,
                          train_args: LoCaDistillArguments
                          ) -> LoCaDistillTrainer:
    """Load the models and data of a run and return its trainer.

    Refuses a ``max_length`` beyond the positions of either model before
    any record is encoded.
    """
    tokenizer = load_tokenizer(data_args.student)
    teacher_tokenizer = load_tokenizer(data_args.teacher)
    student = load_causal_lm(data_args.student, data_args.student_dtype)
    teacher = load_causal_lm(data_args.teacher, data_args.teacher_dtype)
    check_length_fits(data_args.max_length, (student, teacher),
                      f'--max_length {data_args.max_length}')
    if data_args.lora_r:
        student = add_lora(student, data_args.lora_r, data_args.lora_alpha,
                           data_args.lora_dropout,
                           data_args.lora_target_modules)

    def dataset(path: str, examples=None) -> InstructionDataset:
        return InstructionDataset(
            examples or load_instruction_jsonl(path), tokenizer,
            data_args.max_length, data_args.max_prompt_length,
            data_args.tokenization)

    train_dataset = dataset(data_args.train_file)
    print(f'{len(train_dataset)} training records '
          f'({train_dataset.num_dropped} dropped for prompts over '
          f'{data_args.max_prompt_length} tokens)')
    eval_dataset, callbacks = None, []
    if data_args.eval_file is not None:
        eval_examples = load_instruction_jsonl(data_args.eval_file)
        eval_dataset = dataset(data_args.eval_file, eval_examples)
        callbacks.append(
            RougeLCallback(
                eval_examples[:data_args.rouge_limit],
                data_args.rouge_max_new_tokens,
                train_args.per_device_eval_batch_size,
                tokenization=data_args.tokenization))
    return LoCaDistillTrainer(
        model=student,
        teacher_model=teacher,
        args=train_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        callbacks=callbacks,
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        teacher_processing_class=teacher_tokenizer)
