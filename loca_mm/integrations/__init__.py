"""LoCa in training frameworks other than OpenMMLab.

Submodules import their framework when they are imported themselves, so
``import loca_mm`` never needs them: use
``from loca_mm.integrations.transformers import LoCaDistillTrainer``
(requires the ``llm`` extra: ``transformers``, ``accelerate``,
``rouge-score``; ``peft`` for a LoRA student).

* :mod:`.transformers`: the distillation ``Trainer`` and its per-token loss.
* :mod:`.instruction_data`, :mod:`.instruction_eval`: Dolly / MiniLLM
  records, generation, ROUGE-L and its training callback.
* :mod:`.hf_models`, :mod:`.distill_run`: loading models and tokenizers, and
  a whole run from its settings (what ``tools/llm`` calls).

Importing this package imports nothing of OpenMMLab and changes nothing,
except where torchvision is installed but its compiled ops cannot load (its
CUDA wheel beside the CPU build of torch): transformers imports torchvision,
which then aborts, so the two operator schemas it needs are declared first
(:func:`loca_mm.compat.fix_torchvision_ops_schema`). Import a module of this
package before transformers loads its models.
"""
from loca_mm.compat import fix_torchvision_ops_schema

fix_torchvision_ops_schema()
