"""
Workers as Slurm job steps.

- :mod:`.launcher`: :class:`~.launcher.SlurmLauncher`, one ``srun`` per job;
- :mod:`.guard`: the local guard that holds the lifeline and runs ``srun``
  (``python -P -m turberfield_twisted.launch.slurm.guard``); it loads only
  :mod:`turberfield_twisted.contract` and the standard library.
"""
