"""LoCa in training frameworks other than OpenMMLab.

Submodules import their framework when they are imported themselves, so
``import loca_mm`` never needs them: use
``from loca_mm.integrations.transformers import LoCaDistillTrainer``
(requires the ``llm`` extra: ``transformers``, ``accelerate``,
``rouge-score``).
"""
