"""Experiments that run the project's configs and report on them: importable,
so that the tools and the demo only parse arguments and call them.

* :mod:`.fashion_mnist`: when does LoCa help? Students distilled from
  teachers of different quality on Fashion-MNIST, over paired seeds.
* :mod:`.metrics`: calibration of a classifier (expected calibration error,
  negative log-likelihood) and the fits the study reports.
"""
