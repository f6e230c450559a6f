"""
The event streams of the control API's callers: each opened with what the
caller's token may see (audit records: admins only; a scoped token: the
jobs and services its scope names, by module or service name), and ended
at once when that token stops working (revoked, the admin token rotated
out, or expired).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web.server import Request

from turberfield_twisted.access.gate import caller_of
from turberfield_twisted.access.roles import Role
from turberfield_twisted.http.events import Entry, EventStream, Journal
from turberfield_twisted.jobs.job import Job

__all__ = ["Streams"]


class Streams:
    """
    Streams of ``journal`` on ``reactor``; ``job_of(guid)`` is the job an
    entry is about (None if the daemon forgot it).
    """

    def __init__(self, journal: Journal, reactor: IReactorTime,
                 job_of: Callable[[str], Job | None]):
        self._journal = journal
        self._reactor = reactor
        self._job_of = job_of
        #: Open streams by the digest of the token that opened each.
        self._open: dict[str, set[EventStream]] = {}

    def open(self, request: Request, logs: str | None,
             last: tuple[str, int] | None) -> Deferred[bytes]:
        """Stream to ``request`` what its caller may see (``logs``: that job's output too)."""
        caller = caller_of(request)
        admin = caller is None or caller.role.allows(Role.ADMIN)

        def wanted(entry: Entry) -> bool:
            if entry.event == "audit":
                return admin
            if caller is not None and caller.scope:
                if entry.names:  # an event: of a module, and a service's
                    if not caller.may_touch(*entry.names):
                        return False
                else:  # a line of output: its job's
                    job = self._job_of(entry.guid)
                    if job is None or not caller.may_touch(job.module, job.service):
                        return False
            return entry.event != "log" or entry.guid == logs

        stream = EventStream(self._journal, request, self._reactor, wanted)
        if caller is not None:
            held = self._open.setdefault(caller.digest, set())
            held.add(stream)
            held_until: IDelayedCall | None = None
            if caller.expires is not None:  # it ends when its token does
                held_until = self._reactor.callLater(
                    max(0.0, caller.expires - self._reactor.seconds()), stream.close)

            def ended(result: bytes) -> bytes:
                held.discard(stream)
                if held_until is not None and held_until.active():
                    held_until.cancel()
                return result

            stream.done.addCallback(ended)
        return stream.start(last)

    def close(self, digest: str) -> None:
        """The token of ``digest`` stopped working: end the streams it opened."""
        for stream in list(self._open.pop(digest, ())):
            stream.close()
