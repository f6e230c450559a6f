"""
How a liveness check asks a job's worker ``GET live_path``
(:class:`Prober`): :class:`WireProbe` holds one kept-alive connection
per job and reuses it for every check, the request's bytes built once
per job, the answer read by
:class:`~turberfield_twisted.worker.wire.ResponseReader` (no request,
response or header objects of an HTTP client on the way: a check costs
the daemon a write and a read). :class:`TreqProbe` asks through a
treq-like client (what tests and an initiator given a client use).

A check passes if the answer is 200 and, when its body is small JSON
naming a guid, names the job's. A kept connection the worker closed is
opened again by the next check; a check whose request went out on a
kept connection that closed before any byte of answer came is sent once
more on a new one (it is a GET), so it fails only if that one does too.
The check's timeout is the caller's (``Deferred.addTimeout``):
cancelling a check aborts its connection, which the next check opens
again.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime, ISystemHandle
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.python.failure import Failure

from turberfield_twisted.jobs.job import Job
from turberfield_twisted.jobs.readiness import answer_is_from
from turberfield_twisted.worker.endpoint import client_endpoint
from turberfield_twisted.worker.parent import HttpClient
from turberfield_twisted.worker.wire import RawHeaders, ResponseReader, WireError

if TYPE_CHECKING:
    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["Prober", "TreqProbe", "WireProbe"]

#: The largest body whose guid is read (a worker's /health answer is a few dozen bytes):
#: a longer one is read through and passes on its status alone.
GUID_LIMIT = 4096


class Prober(Protocol):
    """Asks a job's worker one liveness question at a time."""

    def check(self, job: Job, path: str, timeout: float) -> Deferred[str | None]:
        """``GET path`` of ``job``: None if it answered well, else how it did not."""

    def forget(self, guid: str) -> None:
        """Job ``guid`` is checked no more: let go of what is held for it."""


def _judge(guid: str, path: str, code: int, body: bytes | None) -> str | None:
    """How an answer fails a check (None: it passes)."""
    if code != 200:
        return f"GET {path} answered {code}"
    if body is not None and b"guid" in body and not answer_is_from(guid, body):
        return f"GET {path} was answered by another job"
    return None


class TreqProbe:
    """Checks through ``http`` (treq-like), a request and a connection each, on ``reactor``."""

    def __init__(self, http: HttpClient, reactor: IReactorTime):
        self.http, self.reactor = http, reactor

    def check(self, job: Job, path: str, timeout: float) -> Deferred[str | None]:
        """``GET path`` of ``job`` (see :class:`Prober`)."""
        return Deferred.fromCoroutine(self._ask(job, path, timeout))

    async def _ask(self, job: Job, path: str, timeout: float) -> str | None:
        began = self.reactor.seconds()
        try:
            response = await self.http.get(job.url(path), timeout=timeout, reactor=self.reactor)
            body = await response.content()
        except CancelledError:
            raise
        except Exception as exc:
            if self.reactor.seconds() - began >= timeout:  # the client's own timeout
                return f"no answer within {timeout:g}s"
            return f"GET {path} failed: {type(exc).__name__}"
        return _judge(job.guid, path, response.code, body)

    def forget(self, guid: str) -> None:
        """Nothing is held per job."""


class Unanswered(Exception):
    """A kept connection closed before any byte of the answer came."""


class _Kept(TwistedProtocol):
    """One job's kept-alive connection to its worker: one check at a time."""

    def __init__(self) -> None:
        self.reader = ResponseReader(self)
        self.answer: Deferred[tuple[int, bytes | None]] | None = None
        self.closed = False
        #: How many requests it has carried.
        self.asked = 0
        #: Whether a request went through the transport's buffer (none is sent directly since).
        self.buffered = False
        self._socket: socket.socket | None = None
        self._heard = False
        self._code = 0
        self._body: list[bytes] | None = []
        self._size = 0

    def abort(self) -> None:
        """Close it at once (a check was cancelled, or its answer was not HTTP)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def ask(self, request: bytes) -> Deferred[tuple[int, bytes | None]]:
        """Send ``request``: fires with its answer's status and body (None: too long to read)."""
        assert self.transport is not None and self.answer is None
        self.answer = Deferred(self._cancel)
        self._heard, self._code, self._body, self._size = False, 0, [], 0
        self.asked += 1
        self.reader.expect()
        self._send(request)
        return self.answer

    def _send(self, request: bytes) -> None:
        """
        Send ``request`` on the socket at once if it takes it whole (it does, on
        a connection idle since its last answer): no write event, no writer
        registered and unregistered with the reactor. Else, and from then on,
        through the transport's buffer.
        """
        assert self.transport is not None
        if self._socket is not None and not self.buffered:
            try:
                sent = self._socket.send(request)
            except OSError:
                sent = 0  # the transport's write meets the error too, and closes
            if sent == len(request):
                return
            request, self.buffered = request[sent:], True
        self.transport.write(request)

    def connectionMade(self) -> None:
        system = ISystemHandle(self.transport, None)
        handle = None if system is None else system.getHandle()
        if isinstance(handle, socket.socket):  # a real TCP connection (not a test's fake)
            self._socket = handle

    def _cancel(self, answer: Deferred[tuple[int, bytes | None]]) -> None:
        self.answer = None
        self.abort()

    def dataReceived(self, data: bytes) -> None:
        if self.answer is None:  # unasked: this connection's answers can't be told apart
            self.abort()
            return
        self._heard = True
        try:
            self.reader.feed(data)
        except WireError as exc:
            self._fail(exc)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        if self.answer is None:
            return
        if not self._heard:
            self._fail(Unanswered("the connection closed before an answer"))
            return
        try:
            self.reader.eof()
        except WireError as exc:
            self._fail(exc)
            return
        self._fail(WireError("the connection closed before an answer"))

    def _fail(self, exc: Exception) -> None:
        answer, self.answer = self.answer, None
        self.abort()
        if answer is not None:
            answer.errback(exc)

    # -- the reader's sink ---------------------------------------------------

    def head(self, status: int, headers: RawHeaders, length: int | None) -> None:
        self._code = status
        if length is not None and length > GUID_LIMIT:
            self._body = None

    def body(self, data: bytes) -> None:
        if self._body is not None:
            self._size += len(data)
            if self._size > GUID_LIMIT:
                self._body = None
            else:
                self._body.append(data)

    def end(self, reusable: bool) -> None:
        answer, self.answer = self.answer, None
        if not reusable:
            self.closed = True
            assert self.transport is not None
            self.transport.loseConnection()
        if answer is not None:
            body = self._body
            answer.callback((self._code, None if body is None else b"".join(body)))


class WireProbe:
    """
    Checks on one kept-alive connection per job, opened on ``reactor``
    (see the module's docstring).
    """

    def __init__(self, reactor: IClientReactor):
        self.reactor = reactor
        self._kept: dict[str, _Kept] = {}
        #: Per job: where it listens, the path, and the request's bytes.
        self._requests: dict[str, tuple[str, int, str, bytes]] = {}
        #: How many connections were opened (the tests read it).
        self.opened = 0

    def check(self, job: Job, path: str, timeout: float) -> Deferred[str | None]:
        """``GET path`` of ``job`` (see :class:`Prober`)."""
        request = self._request(job, path)
        kept = self._kept.get(job.guid)
        if kept is None or kept.closed:
            return Deferred.fromCoroutine(self._ask(job, path, request, timeout))
        guid = job.guid

        def answered(answer: tuple[int, bytes | None]) -> str | None:
            return _judge(guid, path, answer[0], answer[1])

        def failed(failure: Failure) -> Failure | str | Deferred[str | None]:
            if failure.check(CancelledError):
                return failure
            if failure.check(Unanswered) and self._kept.get(guid) is kept:
                # It had closed while idle: once more, on a new connection.
                return Deferred.fromCoroutine(self._ask(job, path, request, timeout))
            kept.abort()
            return f"GET {path} failed: {failure.type.__name__}"  # type: ignore[union-attr]

        return kept.ask(request).addCallbacks(answered, failed)

    def forget(self, guid: str) -> None:
        """Close job ``guid``'s connection and forget its request."""
        self._requests.pop(guid, None)
        kept = self._kept.pop(guid, None)
        if kept is not None and not kept.closed:
            kept.closed = True
            if kept.transport is not None:
                kept.transport.loseConnection()

    def _request(self, job: Job, path: str) -> bytes:
        cached = self._requests.get(job.guid)
        if cached is not None and cached[:3] == (job.host, job.port, path):
            return cached[3]
        self.forget(job.guid)  # it listens elsewhere now
        netloc = job.url()[len("http://"):]
        request = (f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\n\r\n").encode("ascii")
        self._requests[job.guid] = (job.host, job.port, path, request)
        return request

    async def _connect(self, job: Job, timeout: float) -> _Kept:
        kept = _Kept()
        factory = Factory.forProtocol(lambda: kept)
        factory.noisy = False
        endpoint = client_endpoint(self.reactor, job.host, job.port, timeout)
        self.opened += 1
        await endpoint.connect(factory)  # fires once it is made
        self._kept[job.guid] = kept
        return kept

    async def _ask(self, job: Job, path: str, request: bytes, timeout: float) -> str | None:
        """The check on a new connection."""
        kept: _Kept | None = None
        try:
            kept = await self._connect(job, timeout)
            code, body = await kept.ask(request)
        except CancelledError:
            if kept is not None:
                kept.abort()
            raise
        except Exception as exc:
            if kept is not None:
                kept.abort()
            return f"GET {path} failed: {type(exc).__name__}"
        return _judge(job.guid, path, code, body)
