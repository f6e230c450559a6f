"""
How the API shows jobs (each job's record with what is read live about
its process group: uptime, memory, CPU time) and the modules a launch
may name.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable
from typing import Any

from turberfield_twisted.configtext import redact
from turberfield_twisted.jobs.job import Job
from turberfield_twisted.jobs.procstat import job_stats

__all__ = ["job_views", "module_views"]

def job_views(jobs: Iterable[Job], now: float) -> list[dict[str, Any]]:
    """
    Each job's JSON with ``uptime`` (seconds since its spawn, at ``now``),
    ``rss`` (bytes) and ``cpu`` (seconds) of its process group (its reading
    of the last second, shared with other callers: :func:`~.procstat.job_stats`);
    None where it has no process on this host.
    """
    views = []
    for job in jobs:
        found = job_stats(job, now)
        running = job.process is not None and job.started is not None
        views.append({**job.as_json(),
                      "uptime": round(now - (job.started or 0.0), 3) if running else None,
                      "rss": found.rss if found else None,
                      "cpu": round(found.cpu_seconds, 2) if found else None})
    return views


def module_views(cfg: configparser.ConfigParser, settings: Any) -> list[dict[str, Any]]:
    """
    Each module a launch may name (``settings``: the checked
    :class:`~.settings.Settings` of ``cfg``), by name: the keys a launch
    may override and their defaults (less secrets), where its workers
    run and whether they are forked warm.
    """
    views = []
    for name, module in sorted(settings.modules.items()):
        keys = sorted(module.overridable)
        defaults = {key: cfg.get(name, key) for key in keys if cfg.has_option(name, key)}
        views.append({"name": name, "overridable": keys, "defaults": redact(defaults),
                      "launcher": module.launcher, "warm": module.warm})
    return views
