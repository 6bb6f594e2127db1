"""When does LoCa help? A study on Fashion-MNIST, outside the package.

* :mod:`.study`: students distilled from teachers of different quality on
  Fashion-MNIST, over paired seeds, with the project's configs.
* :mod:`.metrics`: calibration of a classifier (expected calibration error,
  negative log-likelihood) and the fits the study reports.
* :mod:`.report`: tables and figures of a study's summary.
* :mod:`.worker`: the set-up of a process that runs many small Runners.

``demo.py`` (run by ``tools/demo.sh``) and ``run_study.py`` are the command
lines; README.md says how to run them.
"""
