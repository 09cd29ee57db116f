"""The commands of shiftnas: the only code that knows the run directory and prints.

``run.run`` (train, search, export), ``export``, ``finetune``, ``profile``, ``groundtruth`` (and rank);
``context.prepare`` builds a run's objects once, ``rundir.RunDir`` names its files.
"""
