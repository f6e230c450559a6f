"""
Where a worker runs: the launcher seam and its providers.

- :mod:`.interfaces`: :class:`~.interfaces.ILauncher`,
  :class:`~.interfaces.IWorkerProcess` and its local and remote kinds;
- :mod:`.local`: :class:`~.local.LocalLauncher`, cold workers on this host
  with ``reactor.spawnProcess``;
- :mod:`.protocol`: the worker's ProcessProtocol (config to stdin, output
  lines, the exit);
- :mod:`.ports`: choosing a child port (one way for every caller), and the
  bind probe;
- :mod:`.reactor`: what the daemon needs of its reactor, as a type;
- :mod:`.router`: which launcher runs a module (its section's ``launcher``
  and ``warm`` keys);
- :mod:`.warm`: forks from a preloaded template (its states declared in
  :mod:`.warm.states`); :mod:`.slurm`: Slurm job steps.

A new launcher is a new provider of these interfaces; the lifecycle does
not change.
"""
