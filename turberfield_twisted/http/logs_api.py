"""
The control API's logs: ``GET /jobs/{guid}/logs`` (``?lines=``,
``?since=`` seconds since the epoch) reads a job's output from its files on disk when logs on
disk are on (so it survives a daemon restart), else from the live tail;
``POST /logs/reopen`` (an operator's) reopens the files, as SIGUSR1 does,
after an outside tool has moved them.

:class:`LogsAPI` is mounted under ``/logs`` by
:class:`~turberfield_twisted.http.api.ControlAPI`, which also hands it
the reads of ``/jobs/{guid}/logs``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from turberfield_twisted.access.gate import Gate
from turberfield_twisted.errors import ApiError, Invalid
from turberfield_twisted.http.args import lines_arg
from turberfield_twisted.http.gate import GatedRouter
from turberfield_twisted.http.roles import ROLES
from turberfield_twisted.http.web import json_response, query_arg
from turberfield_twisted.jobs.job import Job

if TYPE_CHECKING:  # imported only where logs on disk are on
    from turberfield_twisted.daemon.joblogs import JobLogs

__all__ = ["MAX_SINCE", "LogsAPI", "since_arg"]


#: The latest ``?since=`` taken: seconds since the epoch (the year 5138).
MAX_SINCE = 1e11


def since_arg(request: IRequest) -> float | None:
    """``?since=`` of ``GET /jobs/{guid}/logs``: seconds since the epoch (0..MAX_SINCE); None."""
    given = query_arg(request, b"since")
    if given is None:
        return None
    try:
        value = float(given)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_SINCE:
        raise Invalid(f"since must be a number of seconds since the epoch, 0 to {MAX_SINCE:g}")
    return value


class LogsAPI:
    """The logs routes, for the callers ``gate`` admits; ``logs`` None: logs on disk are off."""

    app = GatedRouter(ROLES, "/logs")
    log = Logger()

    def __init__(self, logs: JobLogs | None, gate: Gate):
        self.logs = logs
        self.gate = gate

    async def read(self, request: Request, job: Job) -> bytes:
        """``GET /jobs/{guid}/logs``: ``job``'s last ``lines``, at ``since`` or later."""
        count = lines_arg(request)
        since = since_arg(request)
        if self.logs is None:
            lines = [line for line in job.tail.lines() if since is None or line["time"] >= since]
            found: list[dict[str, object]] = lines[-count:]
        else:
            found = await self.logs.read(job.guid, count, since)
        return json_response(request, 200, {"guid": job.guid, "lines": found})

    @app.route("/reopen", methods=["POST"])
    async def reopen(self, request: Request) -> bytes:
        """Reopen every job's log file (after an outside tool moved them); how many."""
        if self.logs is None:
            raise ApiError(404, "logs on disk are off (log_dir = off)")
        self.log.info("log files reopened by the control API")
        return json_response(request, 200, {"reopened": await self.logs.reopen()})
