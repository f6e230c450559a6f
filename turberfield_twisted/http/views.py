"""
How the API shows jobs (each job's record with what is read live about
its process group: uptime, memory, CPU time) and the modules a launch
may name.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable
from typing import Any

from turberfield_twisted.config.settings import Settings
from turberfield_twisted.configtext import redact
from turberfield_twisted.jobs.job import Job
from turberfield_twisted.jobs.procstat import job_stats
from turberfield_twisted.launch.interfaces import IRemoteProcess

__all__ = ["change_view", "job_views", "module_views"]

def job_views(jobs: Iterable[Job], now: float) -> list[dict[str, Any]]:
    """
    Each job's JSON with ``uptime`` (seconds since its spawn, at ``now``),
    ``rss`` (bytes) and ``cpu`` (seconds) of its process group (its reading
    of the last second, shared with other callers: :func:`~.procstat.job_stats`);
    None where it has no process on this host; ``host``, where the daemon
    reaches it (None until known), and ``node``, its Slurm node.
    """
    views = []
    for job in jobs:
        found = job_stats(job, now)
        running = job.process is not None and job.started is not None
        remote = IRemoteProcess(job.process, None)
        views.append({**job.as_json(),
                      "host": job.host or None if job.process is not None else None,
                      "node": remote.node if remote is not None else None,
                      "uptime": round(now - (job.started or 0.0), 3) if running else None,
                      "rss": found.rss if found else None,
                      "cpu": round(found.cpu_seconds, 2) if found else None})
    return views


def module_views(cfg: configparser.ConfigParser, settings: Settings) -> list[dict[str, Any]]:
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


def change_view(job: Job, settings: Any) -> dict[str, Any]:
    """
    The answer to a live config change of ``job``: the job, and ``kept``,
    whether the change is kept for the daemon's next start (it is in the
    state store), which it is not for a job a ``[job:NAME]`` section of a
    config file declares (``settings``): ``note`` then says so, and where.
    """
    declared = settings.declared.get(job.guid) if job.declared else None
    if declared is None:
        return {**job.as_json(), "kept": True}
    note = (f"job {job.guid} is declared in {declared.source}: this change lasts until the"
            f" daemon restarts, or a reload changes its [job:{job.guid}] section; to keep it,"
            " set it there")
    return {**job.as_json(), "kept": False, "note": note}
