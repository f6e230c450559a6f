"""
The worker's side of liveness and recycling, as its section says (the
daemon checked the keys; see :mod:`turberfield_twisted.config.operations`):

- ``live_watchdog = true``: after ``READY=1`` the ready fd stays open and
  a :class:`~twisted.internet.task.LoopingCall` on the worker's reactor
  writes :data:`~turberfield_twisted.contract.WATCHDOG_LINE` on it every
  ``live_interval / 2`` seconds (as ``sd_notify`` pings at half
  ``WATCHDOG_USEC``), on the wall clock's grid of that period (so that
  the daemon's workers ping together, and it reads them all in one
  wakeup): a reactor that is stuck stops pinging.
- ``max_requests = N``: the requests it serves (not its health checks nor
  the daemon's config pushes) are counted; at the N-th it asks the daemon
  to recycle it (event :data:`~turberfield_twisted.contract.MAX_REQUESTS_EVENT`):
  the daemon starts a new instance first, if it is a service's, then
  stops this one (SIGTERM: it drains and exits 0). With no daemon to ask
  (or if the ask fails), it drains and exits 0 by itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import IResource
from zope.interface import implementer

from turberfield_twisted.contract import (
    CONFIG_PATH,
    HEALTH_PATH,
    MAX_REQUESTS_EVENT,
    READY_LINE,
    WATCHDOG_LINE,
)
from turberfield_twisted.errors import ApiError, TransportError

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

    from turberfield_twisted.worker.parent import ParentClient

__all__ = ["Upkeep"]

log = Logger(namespace="turberfield_twisted.worker")


def _number(section: Mapping[str, str], key: str) -> float | None:
    try:
        value = float(section.get(key, ""))
    except ValueError:
        return None
    return value if value > 0 else None


@implementer(IResource)
class _Counted:
    """``inner`` (a leaf, as Klein's resource is), each request counted by ``count(path)``."""

    isLeaf = True

    def __init__(self, inner: IResource, count: Callable[[bytes], None]):
        self._inner = inner
        self._count = count

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("a counted resource takes no children")

    def render(self, request: IRequest) -> Any:
        self._count(request.path)
        return self._inner.render(request)


class Upkeep:
    """
    Job ``guid``'s watchdog pings and request count, as its ``section``
    says, on ``reactor``; ``parent`` is its client of the daemon (None:
    none), ``drain()`` drains it and exits.
    """

    def __init__(self, reactor: Any, guid: str, section: Mapping[str, str],
                 parent: ParentClient | None, drain: Callable[[], None]):
        self._reactor = reactor
        self._guid = guid
        self._parent = parent
        self._drain = drain
        interval = _number(section, "live_interval")
        watchdog = section.get("live_watchdog", "").strip().lower() in ("1", "true", "yes", "on")
        #: Seconds between watchdog pings (None: it sends none).
        self.ping_every = interval / 2 if watchdog and interval else None
        limit = _number(section, "max_requests")
        #: Requests after which it asks to be recycled (None: never).
        self.max_requests = int(limit) if limit else None
        self._exempt = {HEALTH_PATH.encode(), CONFIG_PATH.encode(),
                        section.get("live_path", HEALTH_PATH).encode("utf-8", "replace")}
        #: Requests served (those counted).
        self.served = 0
        self._pinger: LoopingCall | None = None

    # -- recycling by requests -------------------------------------------------

    def wrap(self, resource: IResource) -> IResource:
        """``resource``, its requests counted if it has a ``max_requests``."""
        return resource if self.max_requests is None else _Counted(resource, self.count)

    def count(self, path: bytes) -> None:
        """A request for ``path`` is served: count it (unless it is a health check)."""
        if path in self._exempt:
            return
        self.served += 1
        if self.served == self.max_requests:
            self._reactor.callLater(0, self._recycle, self.served)

    def _recycle(self, served: int) -> None:
        log.info("job {guid}: served {count} requests (max_requests): asking to be recycled",
                 guid=self._guid, count=served)
        if self._parent is None:
            self._drain()
            return
        asked = self._parent.post_event(MAX_REQUESTS_EVENT, {
            "requests": served, "max_requests": self.max_requests})
        def failed(failure: Any) -> None:
            failure.trap(OSError, ApiError, TransportError)
            log.error("job {guid}: could not ask to be recycled ({why}): draining",
                      guid=self._guid, why=str(failure.value))
            self._drain()

        Deferred.fromCoroutine(asked).addErrback(failed)

    # -- the ready fd ---------------------------------------------------------------

    def say_ready(self, fd: int) -> None:
        """
        Write ``READY=1`` on ready fd ``fd``; then close it, or, with
        watchdog pings, keep it open and ping from now on.
        """
        try:
            os.write(fd, READY_LINE)
        except OSError:
            os.close(fd)  # the initiator polls instead
            return
        if self.ping_every is None:
            os.close(fd)
            return
        os.set_blocking(fd, False)
        self._pinger = LoopingCall(self._ping, fd)
        self._pinger.clock = self._reactor
        # On the wall clock's grid of ping_every: every worker pings at the same
        # instants, so the daemon reads a hundred pings in one wakeup, not a hundred.
        period = self.ping_every
        first = period - self._reactor.seconds() % period
        self._reactor.callLater(first, self._pinger.start, period, True)

    def _ping(self, fd: int) -> None:
        try:
            os.write(fd, WATCHDOG_LINE)
        except BlockingIOError:
            pass  # the daemon is behind reading: the next one will do
        except OSError:
            if self._pinger is not None and self._pinger.running:
                self._pinger.stop()
            os.close(fd)
