"""
Where a worker that runs elsewhere listens: a worker on a cluster node
has no ready fd, so it says so over HTTP (``POST /jobs/{guid}/listening``,
with its job token): ``{"host": IP, "port": P, "step"?: "JOBID.STEP"}``.
:func:`take_report` checks the report and hands it to the job's
:class:`~turberfield_twisted.launch.interfaces.IRemoteProcess`, whose
``listening()`` then fires: the lifecycle confirms one health check at
that address before the job is ready.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from turberfield_twisted.config.names import STEP
from turberfield_twisted.errors import ApiError, Invalid
from turberfield_twisted.jobs.job import Job, JobState
from turberfield_twisted.launch.interfaces import IRemoteProcess

__all__ = ["REPORT_KEYS", "take_report"]

#: The keys of a report.
REPORT_KEYS = frozenset({"host", "port", "step"})


def _host(value: Any) -> str:
    try:
        ip = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        ip = None
    if ip is None or ip.is_unspecified or ip.is_multicast:
        raise Invalid("host must be the IP address the worker is reached at")
    return str(ip)


def take_report(job: Job, body: Mapping[str, Any]) -> None:
    """
    ``job``'s worker says where it listens (``body``, checked). Raise
    :class:`Invalid` for a malformed report or one for another port, and a
    409 :class:`ApiError` if the job is not starting or runs on this host.
    """
    host = _host(body.get("host"))
    port, step = body.get("port"), body.get("step")
    if not isinstance(port, int) or isinstance(port, bool) or port != job.port:
        raise Invalid(f"port must be the port job {job.guid} was given")
    if step is not None and not STEP.accepts(step):
        raise Invalid("step must be a Slurm job step, JOBID.STEP")
    process = IRemoteProcess(job.process, None)
    if job.state is not JobState.STARTING:
        raise ApiError(409, f"job {job.guid} is {job.state.value}, not starting")
    if process is None:
        raise ApiError(409, f"job {job.guid} runs on this host: it says it listens on its"
                            " ready fd")
    process.located(host, port, step)
