"""
The API's relayed paths and the one way in to the relay that both of the
site's fronts take: :class:`Mounts` (the jobs' ``/jobs/{guid}/proxy/``
first; :meth:`Mounts.mount` adds another: the services' is
``/services/{name}/proxy/``, :data:`SERVICE_PROXY`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource

from turberfield_twisted.access.audit import AuditTrail
from turberfield_twisted.access.gate import Gate, caller_of
from turberfield_twisted.config.names import GUID, SERVICE_NAME
from turberfield_twisted.http.relay import Answer, Relay, Relayed
from turberfield_twisted.http.roles import ROLES
from turberfield_twisted.http.site import ApiSite, RelayFirst, Take
from turberfield_twisted.http.upstream import Choose, Mount
from turberfield_twisted.http.web import _LimitedRequest

__all__ = ["JOB_PROXY", "SERVICE_PROXY", "Mounts", "admit_operator"]

#: A job's relayed paths: ``/jobs/{guid}/proxy`` and below (the guid is group 1).
JOB_PROXY = re.compile(rb"/jobs/(" + GUID.core.encode("ascii") + rb")/proxy(?:/|\Z)")

#: A service's relayed paths: ``/services/{name}/proxy`` and below (the name is group 1).
SERVICE_PROXY = re.compile(
    rb"/services/(" + SERVICE_NAME.core.encode("ascii") + rb")/proxy(?:/|\Z)")


def admit_operator(gate: Gate, route: str, doing: str) -> Callable[[Relayed], None]:
    """
    A mount's admit step: a relayed request needs the role ``route`` (a
    path of the role table) needs, an operator's (unless the route it came
    by admitted it); ``doing`` says what for, in a refusal.
    """
    role = ROLES[("*", route)]

    def admit(request: Any) -> None:  # a Twisted request, or the front's
        if caller_of(request) is None:
            gate.admit(request, role, doing)

    return admit


class Mounts:
    """
    Relayed paths (``mounts``, the first a job's: ``jobs`` chooses, after
    ``admit``) and what a relayed request goes through: its mount's
    ``admit(request)`` (the API's token check), the upstream its mount
    chooses, its body, ``relay``.
    """

    def __init__(self, relay: Relay, admit: Callable[[Relayed], None], jobs: Choose):
        self.relay = relay
        self.mounts: list[Mount] = [Mount(JOB_PROXY, jobs, admit)]

    def mount(self, pattern: re.Pattern[bytes], choose: Choose,
              admit: Callable[[Relayed], None]) -> Mount:
        """
        Relay requests whose path ``pattern`` matches (its first group a name),
        once ``admit(request)`` lets them, to what ``choose(name, request)``
        gives: an :class:`~.upstream.Upstream`, whose ``mount`` is the prefix
        its ``Location`` goes under (a service's instances, say). Sites made
        before see it too.
        """
        mount = Mount(pattern, choose, admit)
        self.mounts.append(mount)
        return mount

    def relay_to(self, request: Relayed, mount: Mount, name: str, answer: Answer,
                 take: Take) -> Deferred[int | str]:
        """
        Relay ``request`` under ``mount``: the token first (401), then the
        upstream ``name`` chooses (404, 502), then its body (``take()``,
        413), then the relay (400 for a path it does not pass); the answer
        goes into ``answer``. Both of the site's ways in come here.
        """
        mount.admit(request)
        upstream = mount.choose(name, request)
        headers, body, length = take()
        return self.relay.forward(request, headers, body, length, upstream, answer)

    def site(self, routes: Resource, log: Logger, max_body: int, gate: Gate,
             audit: AuditTrail | None, read_timeout: float | None, reactor: object) -> ApiSite:
        """
        A quiet Site (no tracebacks) relaying these mounts, everything else
        ``routes``'s: relayed requests are read by its front as bytes (or, on
        a connection that asked something else before, take a short way past
        the router) and left out of its access log (the relay's metrics count
        them); requests are bounded by ``max_body`` and ``read_timeout``.
        """
        root = RelayFirst(self.relay_to, self.mounts, log, routes, max_body, gate)
        site = ApiSite(root, self.relay_to, self.mounts, requestFactory=_LimitedRequest,
                       reactor=reactor)
        site.gate, site.audit, site.max_body = gate, audit, max_body
        site.read_timeout = read_timeout
        site.noisy = False
        site.displayTracebacks = False
        return site
