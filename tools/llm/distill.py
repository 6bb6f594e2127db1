"""Distil a causal LM on instruction data with KD or LoCa-KD (or DKD+LoCa).

    python tools/llm/distill.py --teacher TEACHER --student STUDENT \\
        --train_file dolly_train.jsonl --output_dir DIR \\
        [--distill_loss {kd,dkd}] [--divergence {fkl,rkl,jsd,skl,srkl}] \\
        [--beta 0.5] [--skew 0.1] [--calibrate {wrong,margin,none}] \\
        [--alpha 0.9] [--tau 1.0] [--standardize] [--ce_weight 0.5] \\
        [--kd_weight 0.5] \\
        [--eval_file dolly_valid.jsonl --eval_strategy epoch] [--lora_r 0] \\
        [--student_dtype float32] [--teacher_dtype float32] \\
        [--compile_loss] [--overwrite_output_dir] \\
        [any transformers.TrainingArguments flag]
    python tools/llm/distill.py --student STUDENT --teacher_cache CACHE \\
        --output_dir DIR [--tau TAU_OF_THE_CACHE] [...]

TEACHER and STUDENT are local directories or Hub names of two causal LMs
that share one tokenizer. The training and evaluation files are JSON, JSON
Lines or Parquet (whatever ``datasets`` loads) of records in Dolly's form
(``instruction``, ``context``, ``response``), MiniLLM's (``instruction``,
``input``, ``output``), ``prompt`` / ``completion``, or conversational
``messages`` (rendered with the tokenizer's chat template); the loss covers
the response (the assistant's last turn) only. Every argument and data file
is checked before a model is loaded. DIR must be empty or new unless
``--overwrite_output_dir`` (which removes the run there first) or
``--resume_from_checkpoint``. The student (or its LoRA adapters), its
tokenizer, the run's model and data arguments (``distill_args.json``, which
eval_rouge.py reads) and its log history (``trainer_state.json``) are saved
to DIR. ``--teacher_cache`` trains from the file tools/llm/cache_teacher.py
made (tokens and the teacher's top-k per response token; forward KL at the
cache's temperature) without loading a teacher. See docs/llm.md for the
paper's setting.
"""
from __future__ import annotations

from typing import Optional, Sequence

# loca_mm first: its compatibility fixes let torchvision, which transformers
# imports, load next to the CPU build of torch.
import loca_mm  # noqa: F401,I001
from transformers import HfArgumentParser

from loca_mm.integrations.distill_run import (ModelDataArguments,
                                              run_distillation)
from loca_mm.integrations.transformers import (LoCaDistillArguments,
                                               LoCaDistillTrainer)


def main(argv: Optional[Sequence[str]] = None) -> LoCaDistillTrainer:
    parser = HfArgumentParser((ModelDataArguments, LoCaDistillArguments))
    data_args, train_args = parser.parse_args_into_dataclasses(
        args=argv, look_for_args_file=False)
    return run_distillation(data_args, train_args)


if __name__ == '__main__':
    main()
