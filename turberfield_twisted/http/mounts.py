"""
The API's relayed paths and the one way in to the relay that both of the
site's fronts take: :class:`Mounts` (the jobs' ``/jobs/{guid}/proxy/``
first; :meth:`Mounts.mount` adds another: the services' is
``/services/{name}/proxy/``, :data:`SERVICE_PROXY`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twisted.internet.defer import Deferred

from turberfield_twisted.config.names import GUID, SERVICE_NAME
from turberfield_twisted.http.relay import Answer, Relay, Relayed
from turberfield_twisted.http.site import Take
from turberfield_twisted.http.upstream import Choose, Mount

__all__ = ["JOB_PROXY", "SERVICE_PROXY", "Mounts"]

#: A job's relayed paths: ``/jobs/{guid}/proxy`` and below (the guid is group 1).
JOB_PROXY = re.compile(rb"/jobs/(" + GUID.core.encode("ascii") + rb")/proxy(?:/|\Z)")

#: A service's relayed paths: ``/services/{name}/proxy`` and below (the name is group 1).
SERVICE_PROXY = re.compile(
    rb"/services/(" + SERVICE_NAME.core.encode("ascii") + rb")/proxy(?:/|\Z)")


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
