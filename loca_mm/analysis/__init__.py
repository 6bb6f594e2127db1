"""Analyses of a trained network on a config's data, importable so that
``tools/analysis_tools/*.py`` only parse arguments and call them.

* :mod:`.misinstruction`: how often a teacher mis-instructs its students on
  their augmented training data, and the LoCa calibration it would get.
"""
