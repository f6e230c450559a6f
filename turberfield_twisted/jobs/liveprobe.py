"""
How a liveness check asks a job's worker ``GET live_path``
(:class:`Prober`), in two moments the caller chooses: :meth:`~Prober.ask`
sends the question, :meth:`~Prober.judge` (``live_timeout`` later) says
how it went, and whatever has not answered by then has failed.

:class:`WireProbe` holds one kept-alive connection per job
(:class:`~turberfield_twisted.jobs.liveline.KeptLine`) and reuses it for
every check, the request's bytes built once per job; the reactor does
not read it: the answer waits in the socket until the judge moment takes
it (no wakeup of the daemon per answer, no timer per check).
:class:`TreqProbe` asks through a treq-like client (what tests and an
initiator given a client use).

A check passes if the answer is 200 and, when its body is small JSON
naming a guid, names the job's. A kept connection the worker closed
while idle is seen as the next check is sent (a non-blocking ``recv``
finds its end) and opened again, without a failure; a request whose
kept connection is known to close before any byte of answer came (the
transport says so before the judge moment) is sent once more on a new
one (it is a GET). A check unanswered at its judge moment aborts its
connection: the next check opens another, so a late answer is never
taken for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IProtocol, IReactorTime
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from turberfield_twisted.jobs.job import Job
from turberfield_twisted.jobs.liveline import GUID_LIMIT, KeptLine, Unanswered
from turberfield_twisted.jobs.readiness import answer_is_from
from turberfield_twisted.worker.endpoint import client_endpoint
from turberfield_twisted.worker.parent import HttpClient

if TYPE_CHECKING:
    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["GUID_LIMIT", "Prober", "TreqProbe", "Unanswered", "WireProbe"]


class Prober(Protocol):
    """Asks a job's worker one liveness question at a time, and judges its answer later."""

    def ask(self, job: Job, path: str, timeout: float) -> None:
        """Send ``GET path`` to ``job``'s worker; :meth:`judge` says how it went."""

    def judge(self, guid: str) -> str | None:
        """
        The last question's verdict now: None if it was answered well, else how
        it was not (unanswered yet: ``no answer within {timeout}s``, and given up).
        """

    def forget(self, guid: str) -> None:
        """Job ``guid`` is checked no more: let go of what is held for it."""


def _judge(guid: str, path: str, code: int, body: bytes | None) -> str | None:
    """How an answer fails a check (None: it passes)."""
    if code != 200:
        return f"GET {path} answered {code}"
    if body is not None and b"guid" in body and not answer_is_from(guid, body):
        return f"GET {path} was answered by another job"
    return None


def _late(timeout: float) -> str:
    return f"no answer within {timeout:g}s"


@attrs.define(eq=False)
class _Pending:
    """A question asked through a client: its Deferred, and its verdict once it came."""

    asked: Deferred[str | None]
    timeout: float
    answered: bool = False
    verdict: str | None = None


class TreqProbe:
    """Checks through ``http`` (treq-like), a request and a connection each, on ``reactor``."""

    def __init__(self, http: HttpClient, reactor: IReactorTime):
        self.http, self.reactor = http, reactor
        self._pending: dict[str, _Pending] = {}

    def ask(self, job: Job, path: str, timeout: float) -> None:
        """``GET path`` of ``job`` (see :class:`Prober`)."""
        self.forget(job.guid)
        asked = Deferred.fromCoroutine(self._ask(job, path, timeout))
        pending = self._pending[job.guid] = _Pending(asked, timeout)

        def came(verdict: str | None) -> None:
            pending.answered, pending.verdict = True, verdict

        asked.addCallback(came).addErrback(lambda failure: failure.trap(CancelledError))

    def judge(self, guid: str) -> str | None:
        """The verdict on job ``guid``'s question (see :class:`Prober`)."""
        pending = self._pending.pop(guid, None)
        if pending is None:
            return "not asked"
        if pending.answered:
            return pending.verdict
        pending.asked.cancel()
        return _late(pending.timeout)

    async def _ask(self, job: Job, path: str, timeout: float) -> str | None:
        began = self.reactor.seconds()
        try:
            response = await self.http.get(job.url(path), timeout=timeout, reactor=self.reactor)
            body = await response.content()
        except CancelledError:
            raise
        except Exception as exc:
            if self.reactor.seconds() - began >= timeout:  # the client's own timeout
                return _late(timeout)
            return f"GET {path} failed: {type(exc).__name__}"
        return _judge(job.guid, path, response.code, body)

    def forget(self, guid: str) -> None:
        """Cancel job ``guid``'s question, if one is out."""
        pending = self._pending.pop(guid, None)
        if pending is not None and not pending.answered:
            pending.asked.cancel()


@attrs.define(eq=False)
class _Asking:
    """One job's checks on the wire: where they go, its connection, the question out."""

    host: str
    port: int
    path: str
    request: bytes
    timeout: float = 1.0
    line: KeptLine | None = None
    #: A connection being opened for the question.
    connecting: Deferred[IProtocol] | None = None
    #: How the question failed before its judge moment (its connection was refused).
    failed: str | None = None
    #: The question went out on a connection of its own (it is not sent again).
    fresh: bool = False
    #: The body of the last answer that passed.
    good: bytes | None = None


class WireProbe:
    """
    Checks on one kept-alive connection per job, opened on ``reactor``
    (see the module's docstring).
    """

    def __init__(self, reactor: IClientReactor):
        self.reactor = reactor
        self._asking: dict[str, _Asking] = {}
        #: How many connections were opened (the tests read it).
        self.opened = 0

    def ask(self, job: Job, path: str, timeout: float) -> None:
        """``GET path`` of ``job`` (see :class:`Prober`)."""
        asking = self._asking.get(job.guid)
        if asking is None or (asking.host, asking.port, asking.path) != (job.host, job.port, path):
            asking = self._prepare(job, path)
        asking.timeout, asking.failed = timeout, None
        line = asking.line
        if line is not None and line.idle():
            asking.fresh = False
            line.ask(asking.request)
        else:
            self._open(asking)

    def judge(self, guid: str) -> str | None:
        """The verdict on job ``guid``'s question, read off its connection now."""
        asking = self._asking.get(guid)
        if asking is None:
            return "not asked"
        if asking.connecting is not None:  # not even connected: given up
            connecting, asking.connecting = asking.connecting, None
            connecting.cancel()
            return _late(asking.timeout)
        if asking.failed is not None or asking.line is None:
            return asking.failed or _late(asking.timeout)
        line = asking.line
        result = line.pull()
        if result is None:
            line.abort()  # its answer, if it comes, is nobody's
            return _late(asking.timeout)
        if isinstance(result, Exception):
            return f"GET {asking.path} failed: {type(result).__name__}"
        code, body = result
        if code == 200 and body is not None and body == asking.good:
            return None  # what it answered last time, and passed (its guid is read once)
        why = _judge(guid, asking.path, code, body)
        asking.good = body if why is None else None
        return why

    def forget(self, guid: str) -> None:
        """Close job ``guid``'s connection and forget its request."""
        asking = self._asking.pop(guid, None)
        if asking is None:
            return
        if asking.connecting is not None:
            asking.connecting.cancel()
        line, asking.line = asking.line, None  # so a drop now opens nothing
        if line is not None and not line.closed:
            line.closed = True
            if line.transport is not None:
                line.transport.loseConnection()

    def _prepare(self, job: Job, path: str) -> _Asking:
        """Job ``job``'s record, its request built (anew if it listens elsewhere now)."""
        self.forget(job.guid)
        netloc = job.url()[len("http://"):]
        request = (f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\n\r\n").encode("ascii")
        asking = self._asking[job.guid] = _Asking(job.host, job.port, path, request)
        return asking

    def _open(self, asking: _Asking) -> None:
        """Send the question on a new connection."""
        asking.fresh, asking.line = True, None

        def dropped(gone: KeptLine) -> None:
            if asking.line is gone and not asking.fresh:  # it had closed: once more, anew
                self._open(asking)

        line = KeptLine(dropped)
        factory = Factory.forProtocol(lambda: line)
        factory.noisy = False
        endpoint = client_endpoint(self.reactor, asking.host, asking.port, asking.timeout)
        self.opened += 1
        connecting = asking.connecting = endpoint.connect(factory)

        def made(_: object) -> None:
            asking.connecting, asking.line = None, line
            line.ask(asking.request)

        def refused(failure: Failure) -> None:
            if failure.check(CancelledError):
                return
            asking.connecting = None
            asking.failed = f"GET {asking.path} failed: {failure.type.__name__}"  # type: ignore[union-attr]

        connecting.addCallbacks(made, refused)
