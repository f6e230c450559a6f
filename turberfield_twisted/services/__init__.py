"""
Services: a named group of jobs of one module that share one listening
socket, which the daemon binds and hands to every instance (the kernel
spreads connections; no byte passes through the daemon).

- :mod:`.model`: what a service is (:class:`~.model.ServiceSpec`), how a
  rollout went, what can happen to one;
- :mod:`.listener`: the shared socket, bound once and kept for the
  service's life;
- :mod:`.group`: one service's instances, started, drained, scaled;
- :mod:`.rollout`: replacing them a step at a time, gated on readiness,
  rolled back by itself;
- :mod:`.registry`: every service of a daemon, made, removed, restored
  and reconciled;
- :mod:`.interfaces`: what it needs of the daemon above it, which
  provides it (the job table, the store).

Imports :mod:`turberfield_twisted.jobs` and below, never the daemon or
the HTTP side.
"""
