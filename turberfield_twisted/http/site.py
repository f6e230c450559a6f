"""
The control API's site: relayed requests (to a job, or to a service's
instance) skip Klein's router (and the access log), everything else is
the Klein app's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from turberfield_twisted.access.audit import AuditTrail
from turberfield_twisted.access.gate import Gate, caller_of, remote_of
from turberfield_twisted.access.roles import Throttled
from turberfield_twisted.config.names import GUID, SERVICE_NAME
from turberfield_twisted.http.channel import ApiChannel
from turberfield_twisted.http.web import answer_error, log_error

__all__ = ["ApiSite", "RelayFirst"]

#: A relayed path that can skip the router: a plain guid, the proxy prefix, anything.
_RELAYED = re.compile(
    rb"/jobs/(" + GUID.core.encode("ascii") + rb")/proxy(?:/|\Z)")


#: A path relayed to a service's instance.
_RELAYED_SERVICE = re.compile(
    rb"/services/(" + SERVICE_NAME.core.encode("ascii") + rb")/proxy(?:/|\Z)")

#: ``relayed(request, name)``: relay a request to a job or a service.
Relayed = Callable[[Any, str], Coroutine[Any, Any, bytes]]


class RelayFirst(Resource):
    """
    The API's root: a request for a worker (``/jobs/{guid}/proxy/...``)
    goes straight to ``relayed(request, guid)``, one for a service's
    (``/services/{name}/proxy/...``) to ``services(request, name)``;
    everything else to ``routes`` (the Klein app, which would route them
    there too). Errors are answered from the one table, logged on ``log``.
    A request carrying a token from an address the ``gate`` makes wait is
    answered 429 here, before any routing: a run of wrong tokens costs the
    daemon little.
    """

    isLeaf = True

    def __init__(self, relayed: Relayed, log: Logger, routes: Resource,
                 gate: Gate | None = None, services: Relayed | None = None):
        super().__init__()
        self.relayed = relayed
        self.services = services
        self.log = log
        self.routes = routes
        self.gate = gate

    def render(self, request: Any) -> Any:
        if self.gate is not None and request.getHeader(b"authorization"):
            try:
                self.gate.check_throttle(request)
            except Throttled as exc:
                return answer_error(request, exc)
        relayed, match = self.relayed, _RELAYED.match(request.path)
        if match is None and self.services is not None:
            relayed, match = self.services, _RELAYED_SERVICE.match(request.path)
        if match is None or getattr(request, "too_large", False):
            return self.routes.render(request)
        gone = False

        def lost(_: Failure) -> None:
            nonlocal gone
            gone = True  # the caller went away: nothing is written to it
            d.cancel()

        d = defer.Deferred.fromCoroutine(relayed(request, match.group(1).decode()))
        d.addErrback(lambda failure: _answered_error(self.log, request, failure))
        d.addCallback(lambda body: None if gone else _finish(request, body))
        request.notifyFinish().addErrback(lost)
        return NOT_DONE_YET


def _answered_error(log: Logger, request: Any, failure: Failure) -> bytes:
    if failure.check(defer.CancelledError):
        return b""  # the caller went away
    log_error(log, request, failure)
    assert failure.value is not None
    return answer_error(request, failure.value)


def _finish(request: Any, body: bytes) -> None:
    if request.finished:
        return
    if body:
        request.write(body)
    request.finish()


class ApiSite(Site):
    """
    A Site whose access log leaves out relayed requests, on an
    :class:`~.channel.ApiChannel` (408, 414, 431); ``read_timeout`` is the
    seconds a caller has to send a whole request (None: no bound). Each
    answered request is told to the ``gate`` (a 401 counts against its
    address) and, if it changed something or was refused, kept in the
    ``audit`` trail (a job's own successful calls are not: they are its
    worker's traffic).
    """

    # Twisted types it as its HTTP/2-choosing wrapper, of no use here without TLS's ALPN.
    protocol = ApiChannel  # type: ignore[assignment]
    read_timeout: float | None = None
    gate: Gate | None = None
    audit: AuditTrail | None = None

    def log(self, request: Any) -> None:
        if not getattr(request, "relayed", False):
            super().log(request)
        status = int(request.code)
        if self.gate is not None:
            self.gate.refused(request, status)
        if self.audit is not None and not (
                status < 400 and getattr(request, "job_caller", None) is not None):
            caller = caller_of(request)
            method = (request.method or b"?").decode("ascii", "replace")
            path = (request.path or b"").decode("utf-8", "replace")
            self.audit.record(caller.name if caller else "-",
                              caller.role.value if caller else "-",
                              remote_of(request), method, path, status)
