"""
Jobs: what a job is and how its life goes, whatever runs it.

- :mod:`.job`: the record (:class:`~.job.Job`), its states, events and output lines;
- :mod:`.transitions`: every state change, declared once;
- :mod:`.lifecycle`: the machine that drives each job through them (spawn,
  readiness, exits, restarts, stop), every timer on the injected reactor;
- :mod:`.admission`: at most ``max_starting`` starting at once, and
  ``requires`` gates;
- :mod:`.supervision`: one job's restart history under its policy;
- :mod:`.readiness`: how the daemon learns a new worker answers;
- :mod:`.table`, :mod:`.observers`: every job by guid, and who hears of them;
- :mod:`.limits`, :mod:`.procstat`: memory watch and rlimits, and what a
  job's process group uses, read from ``/proc``.

Imports :mod:`turberfield_twisted.launch`, :mod:`turberfield_twisted.config`
and below, never the daemon or the HTTP side.
"""
