"""Distil a causal LM on instruction data with KD or LoCa-KD (or DKD+LoCa).

    python tools/llm/distill.py --teacher TEACHER --student STUDENT \\
        --train_file dolly_train.jsonl --output_dir DIR \\
        [--distill_loss {kd,dkd}] [--calibrate {wrong,margin,none}] \\
        [--alpha 0.9] [--tau 1.0] [--ce_weight 0.5] [--kd_weight 0.5] \\
        [any transformers.TrainingArguments flag]

TEACHER and STUDENT are local directories or Hub names of two causal LMs
that share one tokenizer. The training file is JSONL in Dolly's format
(``instruction``, ``context``, ``response``) or MiniLLM's (``instruction``,
``input``, ``output``). The student and its tokenizer are saved to DIR.
See docs/llm.md for the paper's setting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

# loca_mm first: its compatibility fixes let torchvision, which transformers
# imports, load next to the CPU build of torch.
import loca_mm  # noqa: F401,I001
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

from loca_mm.integrations.instruction_data import (InstructionDataset,
                                                   ResponseOnlyCollator,
                                                   load_instruction_jsonl)
from loca_mm.integrations.transformers import (LoCaDistillArguments,
                                               LoCaDistillTrainer)

DTYPES = {
    'float32': torch.float32,
    'bfloat16': torch.bfloat16,
    'float16': torch.float16
}


@dataclass
class ModelDataArguments:
    """Models and data of a distillation run."""
    teacher: str = field(
        metadata={'help': 'teacher causal LM: local directory or Hub name'})
    student: str = field(
        metadata={'help': 'student causal LM: local directory or Hub name'})
    train_file: str = field(
        metadata={'help': 'training records, Dolly or MiniLLM JSONL'})
    max_length: int = field(
        default=512, metadata={'help': 'cap on prompt + response tokens'})
    max_prompt_length: int = field(
        default=256,
        metadata={'help': 'records with longer prompts are dropped'})
    teacher_dtype: str = field(
        default='float32',
        metadata={
            'help': 'precision of the frozen teacher',
            'choices': tuple(DTYPES)
        })


def load_tokenizer(name: str):
    """The tokenizer of a model, with EOS as padding if it has no pad token."""
    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        # GPT-2 has no pad token; padded positions are masked out anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def main(argv: Optional[Sequence[str]] = None) -> LoCaDistillTrainer:
    parser = HfArgumentParser((ModelDataArguments, LoCaDistillArguments))
    data_args, train_args = parser.parse_args_into_dataclasses(
        args=argv, look_for_args_file=False)
    tokenizer = load_tokenizer(data_args.student)
    teacher_tokenizer = load_tokenizer(data_args.teacher)
    student = AutoModelForCausalLM.from_pretrained(
        data_args.student, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(
        data_args.teacher, dtype=DTYPES[data_args.teacher_dtype])
    dataset = InstructionDataset(
        load_instruction_jsonl(data_args.train_file), tokenizer,
        data_args.max_length, data_args.max_prompt_length)
    print(f'{len(dataset)} training records ({dataset.num_dropped} dropped '
          f'for prompts over {data_args.max_prompt_length} tokens)')
    trainer = LoCaDistillTrainer(
        model=student,
        teacher_model=teacher,
        args=train_args,
        train_dataset=dataset,
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        teacher_processing_class=teacher_tokenizer)
    trainer.train(resume_from_checkpoint=train_args.resume_from_checkpoint)
    trainer.save_model(train_args.output_dir)
    return trainer


if __name__ == '__main__':
    main()
