"""
Where a worker that runs elsewhere listens: a worker on a cluster node
has no ready fd, so it says so over HTTP (``POST /jobs/{guid}/listening``,
with its job token): ``{"host": IP, "port": P, "step"?: "JOBID.STEP"}``.
:func:`take_report` checks the report and hands it to the job's
:class:`~turberfield_twisted.launch.interfaces.IRemoteProcess`, which asks
its launcher where the worker really runs (for Slurm, ``squeue`` and the
node's name resolved here): a report it does not agree with is refused
(409), and the job is never probed, relayed to or sent its token there.
Once it agrees, its ``listening()`` fires: the lifecycle confirms one
health check at that address before the job is ready.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred

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


def take_report(job: Job, body: Mapping[str, Any]) -> Deferred[None]:
    """
    ``job``'s worker says where it listens (``body``, checked): fires once
    its process has taken it. Raise :class:`Invalid` for a malformed report,
    and a 409 :class:`ApiError` for another port than the job's, or if the
    job is not starting or runs on this host; fail with
    :class:`~turberfield_twisted.errors.PlacementRefused` if
    its launcher runs it elsewhere.
    """
    host = _host(body.get("host"))
    port, step = body.get("port"), body.get("step")
    if isinstance(port, float) and port.is_integer():
        port = int(port)  # JSON has numbers, not integers: 28000.0 is 28000
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise Invalid("port must be a port number")
    if port != job.port:
        raise ApiError(409, f"job {job.guid} was given another port")
    if step is not None and not STEP.accepts(step):
        raise Invalid("step must be a Slurm job step, JOBID.STEP")
    process = IRemoteProcess(job.process, None)
    if job.state is not JobState.STARTING:
        raise ApiError(409, f"job {job.guid} is {job.state.value}, not starting")
    if process is None:
        raise ApiError(409, f"job {job.guid} runs on this host: it says it listens on its"
                            " ready fd")
    return process.located(host, port, step)
