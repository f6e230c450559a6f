"""
The daemon: the Initiator and what it keeps across restarts.

- :mod:`.initiator`: :class:`~.initiator.Initiator`, a Service holding the
  job table and the seed API (``launch``, ``next_port``, ``read_config``);
- :mod:`.reconcile`: the jobs it starts with (restored and declared) and reload;
- :mod:`.job_config`: each job's config, composed when it is sent (never
  written into the operator's);
- :mod:`.live_config`: a live change of a job's config, sent to its worker;
- :mod:`.statedir`, :mod:`.store`, :mod:`.keeper`: the state directory, the
  SQLite store, and what the operator wants of each job, kept in it;
- :mod:`.metrics`: Prometheus metrics, and :mod:`.exposition` their text;
  :mod:`.notify`: ``sd_notify``.

The edge that puts it together under ``twistd`` is :mod:`turberfield_twisted.tap`.
"""
