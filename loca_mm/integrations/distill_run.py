"""A distillation run from its settings: checks, models, data, trainer,
and what the run leaves in its output directory (what
``tools/llm/distill.py`` does after parsing its arguments)."""
from __future__ import annotations

import dataclasses
import json
import os
import os.path as osp
import shutil
from dataclasses import dataclass, field
from typing import Optional

from .hf_models import (ADAPTER_FILES, DTYPES, MODEL_FILES, add_lora,
                        check_length_fits, files_matching, load_causal_lm,
                        load_model_config, load_tokenizer)
from .instruction_data import (TOKENIZATIONS, InstructionDataset,
                               ResponseOnlyCollator, check_tokenization,
                               load_instruction_file)
from .instruction_eval import RougeLMetric
from .teacher_cache import (LoCaCachedTeacherTrainer, TeacherCacheCollator,
                            TeacherCacheDataset)
from .transformers import LoCaDistillArguments, LoCaDistillTrainer

#: The run's model and data arguments, written beside the saved student.
RUN_ARGS_FILE = 'distill_args.json'
#: What an earlier run leaves in its output directory besides tokenizer
#: files: the model, its checkpoints and the run's records.
RUN_OUTPUTS = MODEL_FILES + ADAPTER_FILES + (
    'checkpoint-*', 'trainer_state.json', RUN_ARGS_FILE)


@dataclass
class ModelDataArguments:
    """Models and data of a distillation run."""
    student: str = field(
        metadata={'help': 'student causal LM: local directory or Hub name'})
    teacher: Optional[str] = field(
        default=None,
        metadata={
            'help':
            'teacher causal LM: local directory or Hub name (not with '
            '--teacher_cache)'
        })
    teacher_cache: Optional[str] = field(
        default=None,
        metadata={
            'help':
            'train from a teacher cache made by tools/llm/cache_teacher.py '
            '(.parquet/.jsonl) instead of --teacher and --train_file: no '
            'teacher is loaded; forward KL only, at the cache\'s --tau'
        })
    train_file: Optional[str] = field(
        default=None,
        metadata={
            'help':
            'training records: a .json, .jsonl or .parquet file of Dolly, '
            'MiniLLM, prompt/completion or conversational (messages) '
            'records'
        })
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
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            'help':
            'train into a non-empty --output_dir: the model, checkpoints and '
            'records of the run there are removed first (without it, a '
            'non-empty --output_dir is refused unless '
            '--resume_from_checkpoint continues its run)'
        })

    def __post_init__(self) -> None:
        """Check what needs no model, so that a mistake stops the run
        before anything is loaded."""
        check_tokenization(self.tokenization)
        if self.teacher_cache is None:
            if self.teacher is None or self.train_file is None:
                raise ValueError('pass --teacher and --train_file, or '
                                 '--teacher_cache')
        elif self.teacher is not None or self.train_file is not None \
                or self.eval_file is not None:
            raise ValueError(
                '--teacher_cache holds the teacher and the training tokens: '
                'it trains without --teacher, --train_file or --eval_file')
        elif not osp.isfile(self.teacher_cache):
            raise FileNotFoundError(
                f'--teacher_cache {self.teacher_cache}: no such file')
        if not 0 < self.max_prompt_length < self.max_length:
            raise ValueError(
                'need 0 < --max_prompt_length < --max_length, got '
                f'--max_prompt_length {self.max_prompt_length} and '
                f'--max_length {self.max_length}')
        for flag in ('train_file', 'eval_file'):
            path = getattr(self, flag)
            if path is not None and not osp.isfile(path):
                raise FileNotFoundError(f'--{flag} {path}: no such file')
        if self.lora_r < 0:
            raise ValueError(f'--lora_r must be >= 0, got {self.lora_r!r}')
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError('--lora_dropout must lie in [0, 1), got '
                             f'{self.lora_dropout!r}')
        if self.rouge_limit is not None and self.eval_file is None:
            raise ValueError('--rouge_limit needs an --eval_file')
        for flag in ('rouge_limit', 'rouge_max_new_tokens'):
            value = getattr(self, flag)
            if value is not None and value < 1:
                raise ValueError(f'--{flag} must be >= 1, got {value!r}')


def check_run_arguments(data_args: ModelDataArguments,
                        train_args: LoCaDistillArguments) -> None:
    """Raise if the two argument sets do not fit together or the output
    directory holds an earlier run that is neither overwritten nor resumed.
    Reads nothing but the output directory's listing."""
    # TrainingArguments turns the flag into an IntervalStrategy.
    eval_strategy = train_args.eval_strategy.value
    evaluates = eval_strategy != 'no'
    if data_args.eval_file is None:
        if evaluates:
            raise ValueError(
                f'--eval_strategy {eval_strategy} needs an '
                '--eval_file to evaluate on')
        if train_args.metric_for_best_model in ('rougeL', 'eval_rougeL'):
            raise ValueError('--metric_for_best_model rougeL needs an '
                             '--eval_file (and --eval_strategy)')
    elif not evaluates:
        raise ValueError(
            f'--eval_file {data_args.eval_file} is scored at evaluations '
            'only: set --eval_strategy steps or epoch')
    output_dir = train_args.output_dir
    resume = train_args.resume_from_checkpoint
    if data_args.overwrite_output_dir and resume:
        folder = osp.abspath(output_dir)
        if osp.commonpath([folder, osp.abspath(resume)]) == folder:
            raise ValueError(
                '--overwrite_output_dir would remove --resume_from_checkpoint '
                f'{resume}, which lies in --output_dir {output_dir}')
    if osp.isdir(output_dir) and os.listdir(output_dir) and not (
            data_args.overwrite_output_dir or resume):
        held = sorted(os.listdir(output_dir))
        shown = ', '.join(held[:5]) + (', ...' if len(held) > 5 else '')
        raise FileExistsError(
            f'--output_dir {output_dir} is not empty ({shown}); pass '
            '--overwrite_output_dir to replace the run there, '
            '--resume_from_checkpoint to continue it, or choose another '
            '--output_dir')


def clear_earlier_run(output_dir: str) -> list[str]:
    """Remove what an earlier run left in ``output_dir`` (:data:`RUN_OUTPUTS`)
    so that none of it mixes with the new run's files.

    Returns:
        list[str]: the names removed.
    """
    if not osp.isdir(output_dir):
        return []
    removed = files_matching(output_dir, RUN_OUTPUTS)
    for name in removed:
        path = osp.join(output_dir, name)
        if osp.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return removed


def write_run_args(data_args: ModelDataArguments,
                   train_args: LoCaDistillArguments) -> str:
    """Write the model and data arguments and the training arguments as
    :data:`RUN_ARGS_FILE` in the output directory; returns its path."""
    os.makedirs(train_args.output_dir, exist_ok=True)
    path = osp.join(train_args.output_dir, RUN_ARGS_FILE)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(
            {
                'model_data': dataclasses.asdict(data_args),
                'training': train_args.to_dict()
            },
            f,
            indent=1)
    return path


def read_run_args(model_dir: str) -> tuple[Optional[dict], Optional[str]]:
    """The model and data arguments of the run that saved ``model_dir``.

    Looks in ``model_dir`` and, for a Trainer checkpoint
    (``.../checkpoint-N``), in the run's folder above it.

    Returns:
        tuple[dict | None, str | None]: the arguments and the file they were
        read from; ``(None, None)`` when there is no such file (e.g. a Hub
        name).
    """
    folders = [model_dir]
    if osp.basename(osp.normpath(model_dir)).startswith('checkpoint-'):
        folders.append(osp.dirname(osp.normpath(model_dir)))
    for folder in folders:
        path = osp.join(folder, RUN_ARGS_FILE)
        if osp.isfile(path):
            with open(path, encoding='utf-8') as f:
                return json.load(f)['model_data'], path
    return None, None


def build_distill_trainer(data_args: ModelDataArguments,
                          train_args: LoCaDistillArguments
                          ) -> LoCaDistillTrainer:
    """Load the models and data of a run and return its trainer.

    The arguments (:func:`check_run_arguments`), the records (read and
    tokenized) and ``max_length`` against the positions of both models
    (from their configs) are checked before any weights are loaded.
    """
    check_run_arguments(data_args, train_args)
    if data_args.teacher_cache is not None:
        return _cached_teacher_trainer(data_args, train_args)
    train_examples = load_instruction_file(data_args.train_file)
    eval_examples = None if data_args.eval_file is None else \
        load_instruction_file(data_args.eval_file)
    for role in ('student', 'teacher'):
        name = getattr(data_args, role)
        check_length_fits(
            data_args.max_length, [load_model_config(name)],
            f'--max_length {data_args.max_length} (the {role}, {name})')
    tokenizer = load_tokenizer(data_args.student)
    teacher_tokenizer = load_tokenizer(data_args.teacher)

    def dataset(examples) -> InstructionDataset:
        return InstructionDataset(examples, tokenizer, data_args.max_length,
                                  data_args.max_prompt_length,
                                  data_args.tokenization)

    # Tokenized before the weights load: a record the tokenizer cannot
    # render (a conversation without a chat template) stops the run early.
    train_dataset = dataset(train_examples)
    print(f'{len(train_dataset)} training records '
          f'({train_dataset.num_dropped} dropped for prompts over '
          f'{data_args.max_prompt_length} tokens)')
    eval_dataset = None if eval_examples is None else dataset(eval_examples)
    student = load_causal_lm(data_args.student, data_args.student_dtype)
    teacher = load_causal_lm(data_args.teacher, data_args.teacher_dtype)
    if data_args.lora_r:
        student = add_lora(student, data_args.lora_r, data_args.lora_alpha,
                           data_args.lora_dropout,
                           data_args.lora_target_modules)
    generation_metrics = {}
    if eval_examples is not None:
        generation_metrics['rougeL'] = RougeLMetric(
            eval_examples[:data_args.rouge_limit],
            data_args.rouge_max_new_tokens,
            train_args.per_device_eval_batch_size,
            tokenization=data_args.tokenization)
    return LoCaDistillTrainer(
        model=student,
        teacher_model=teacher,
        args=train_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        generation_metrics=generation_metrics,
        data_collator=ResponseOnlyCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        teacher_processing_class=teacher_tokenizer)


def _cached_teacher_trainer(data_args: ModelDataArguments,
                            train_args: LoCaDistillArguments
                            ) -> LoCaCachedTeacherTrainer:
    """The trainer of a run from a teacher cache (no teacher loaded)."""
    student = load_causal_lm(data_args.student, data_args.student_dtype)
    if data_args.lora_r:
        student = add_lora(student, data_args.lora_r, data_args.lora_alpha,
                           data_args.lora_dropout,
                           data_args.lora_target_modules)
    train_dataset = TeacherCacheDataset(
        data_args.teacher_cache, train_args.tau,
        student.get_output_embeddings().weight.shape[0])
    print(f'{len(train_dataset)} training records from the teacher cache '
          f'(top {train_dataset.top_k} classes per token)')
    tokenizer = load_tokenizer(data_args.student)
    return LoCaCachedTeacherTrainer(
        model=student,
        args=train_args,
        train_dataset=train_dataset,
        data_collator=TeacherCacheCollator(tokenizer.pad_token_id),
        processing_class=tokenizer)


def run_distillation(data_args: ModelDataArguments,
                     train_args: LoCaDistillArguments) -> LoCaDistillTrainer:
    """Train and save a run, as ``tools/llm/distill.py`` does.

    With ``overwrite_output_dir`` the earlier run's model, checkpoints and
    records are removed once the models are loaded (:func:`clear_earlier_run`;
    the student may be read from that folder). The output directory then
    gets :data:`RUN_ARGS_FILE` before training, and the student (or its
    adapters), its tokenizer and ``trainer_state.json`` (the log history,
    whatever ``save_strategy``) after it.
    """
    trainer = build_distill_trainer(data_args, train_args)
    output_dir = train_args.output_dir
    if train_args.should_save:
        if data_args.overwrite_output_dir:
            removed = clear_earlier_run(output_dir)
            if removed:
                print(f'--overwrite_output_dir: removed {", ".join(removed)} '
                      f'from {output_dir}')
        write_run_args(data_args, train_args)
    trainer.train(resume_from_checkpoint=train_args.resume_from_checkpoint)
    trainer.save_model(output_dir)
    trainer.save_state()
    return trainer
