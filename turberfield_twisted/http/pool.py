"""
:class:`WirePool`: a relayed request's head and body go to the worker as
bytes on a kept-alive connection, and its answer, read by
:class:`~turberfield_twisted.worker.wire.ResponseReader`, goes to the
exchange that asked; no HTTP client objects on the way. It keeps as many
idle connections to a worker as the relay has seen requests in flight to
one at once (``per_host``: at least 4, at most 64). A request on a kept
connection that the worker closed before answering anything (it had
timed out, or restarted) is sent once more on a new one, if it is
idempotent.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure

from turberfield_twisted.http.upstream import (
    MAX_PER_HOST,
    MIN_PER_HOST,
    AnswerSink,
    RequestHead,
    Sending,
    Upstream,
)
from turberfield_twisted.worker.endpoint import client_endpoint
from turberfield_twisted.worker.wire import RawHeaders, ResponseReader, WireError

if TYPE_CHECKING:
    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["WirePool"]

#: Methods sent once more if a kept connection turns out closed.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})


class _Connection(TwistedProtocol):
    """One kept-alive connection to a worker: one request at a time."""

    def __init__(self, pool: WirePool, key: tuple[str, int]):
        self.pool = pool
        self.key = key
        self.reader = ResponseReader(self)
        self.sink: AnswerSink | None = None
        self.reused = False
        self.answered = False
        self.closed = False
        self._ended: tuple[AnswerSink, bool] | None = None
        self._connected: Deferred[_Connection] = Deferred()
        self._closing: list[Deferred[None]] = []

    @property
    def producer(self) -> IPushProducer | None:
        return self.transport  # type: ignore[return-value]

    def connectionMade(self) -> None:
        self._connected.callback(self)

    def request(self, data: bytes, body: IO[bytes] | None, sink: AnswerSink,
                headless: bool) -> None:
        self.sink, self.answered = sink, False
        self.reader.expect(headless)
        assert self.transport is not None
        self.transport.write(data)
        if body is not None:
            FileSender().beginFileTransfer(body, self.transport)

    def cancel(self) -> None:
        self.sink = None
        if not self.closed and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if self.sink is None:  # nothing asked: it is spoilt
            self.cancel()
            return
        self.answered = True
        try:
            self.reader.feed(data)
        except WireError as exc:
            self._fail(exc)
            return
        self._ended_now()

    def _ended_now(self) -> None:
        """
        An answer ended in what was just read: the connection goes back to the
        pool (or is closed) before its asker hears, and only once the reader is
        done with the bytes, so nothing read after the end reaches another asker.
        """
        if self._ended is None:
            return
        sink, reusable = self._ended
        self._ended = None
        if reusable and not self.reader.extra and not self.closed:
            self.reused = True
            self.pool.release(self)
        else:
            self.cancel()
        sink.end(reusable)

    def close(self) -> Deferred[None]:
        """Close it (politely); fire once it is closed."""
        if self.closed or self.transport is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closing.append(d)
        self.transport.loseConnection()
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self.pool.lost(self)
        closing, self._closing = self._closing, []
        for d in closing:
            d.callback(None)
        if self.sink is not None:
            try:
                self.reader.eof()
            except WireError as exc:
                self._fail(exc)
                return
            if self.sink is not None:
                self._fail(WireError("the connection closed"))
            else:
                self._ended_now()

    def _fail(self, exc: Exception) -> None:
        sink, self.sink = self.sink, None
        self.cancel()
        if sink is not None:
            sink.failed(exc)

    # -- the reader's sink ---------------------------------------------------

    def head(self, status: int, headers: RawHeaders, length: int | None) -> None:
        if self.sink is not None:
            self.sink.head(status, headers, length)

    def body(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.body(data)

    def end(self, reusable: bool) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            self._ended = (sink, reusable)


@attrs.define(eq=False)
class _Send:
    """A request waiting for a connection, then on it."""

    pool: WirePool
    upstream: Upstream
    data: bytes
    stream: IO[bytes] | None
    sink: AnswerSink
    headless: bool
    retry: bool
    connection: _Connection | None = None
    connecting: Deferred[_Connection] | None = None
    cancelled: bool = False

    @property
    def producer(self) -> IPushProducer | None:
        return self.connection.producer if self.connection is not None else None

    def cancel(self) -> None:
        self.cancelled = True
        if self.connecting is not None:
            self.connecting.cancel()
        if self.connection is not None:
            self.connection.cancel()

    def go(self, connection: _Connection) -> None:
        self.connecting, self.connection = None, connection
        if not self.cancelled:
            connection.request(self.data, self.stream, self, self.headless)

    # -- the connection's sink: passed on, but a reused connection found closed
    # before any answer is tried once more on a new one (an idempotent request)

    def head(self, status: int, headers: RawHeaders, length: int | None) -> None:
        self.sink.head(status, headers, length)

    def body(self, data: bytes) -> None:
        self.sink.body(data)

    def end(self, reusable: bool) -> None:
        self.sink.end(reusable)

    def failed(self, reason: Exception) -> None:
        connection = self.connection
        if (self.retry and connection is not None and connection.reused
                and not connection.answered and not self.cancelled):
            self.retry = False
            self.pool.connect(self)
            return
        self.sink.failed(reason)


class WirePool:
    """
    Connections to workers, kept alive between requests: at most
    ``per_host`` idle ones to each (:meth:`grow` raises it to the
    concurrency seen, up to :data:`MAX_PER_HOST`).
    """

    def __init__(self, reactor: IClientReactor, per_host: int = MIN_PER_HOST):
        self.reactor = reactor
        self.per_host = per_host
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()

    def send(self, upstream: Upstream, head: RequestHead, body: bytes | IO[bytes],
             length: int, sink: AnswerSink, headless: bool) -> Sending:
        """Send ``head`` and ``body`` (``length`` bytes) to ``upstream``; ``sink`` hears."""
        data = head.encode(upstream, length)
        stream = None
        if isinstance(body, bytes):
            data += body
        else:
            stream = body
        sending = _Send(self, upstream, data, stream, sink, headless,
                        retry=head.method in _IDEMPOTENT and stream is None)
        idle = self._idle.get((upstream.host, upstream.port))
        if idle:
            sending.go(idle.pop())
        else:
            self.connect(sending)
        return sending

    def connect(self, sending: _Send) -> None:
        """A new connection for ``sending``."""
        key = (sending.upstream.host, sending.upstream.port)
        connection = _Connection(self, key)
        self._open.add(connection)
        factory = Factory.forProtocol(lambda: connection)
        factory.noisy = False
        connecting = client_endpoint(self.reactor, *key).connect(factory)
        ready: Deferred[_Connection] = connecting.addCallback(lambda _: connection._connected)
        sending.connection, sending.connecting = None, ready
        ready.addCallbacks(sending.go, lambda failure: self._unreached(failure, sending,
                                                                        connection))

    def _unreached(self, failure: Failure, sending: _Send, connection: _Connection) -> None:
        self._open.discard(connection)
        sending.connecting = None
        assert failure.value is not None
        if not sending.cancelled:
            sending.sink.failed(failure.value)  # type: ignore[arg-type]

    def grow(self, seen: int) -> None:
        """``seen`` requests were in flight to one worker at once: keep as many idle."""
        self.per_host = max(self.per_host, min(seen, MAX_PER_HOST))

    def release(self, connection: _Connection) -> None:
        """``connection`` is free again: kept idle, or closed if enough are."""
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) < self.per_host:
            idle.append(connection)
        else:
            connection.cancel()

    def lost(self, connection: _Connection) -> None:
        """``connection`` closed (either side): it is no longer kept."""
        self._open.discard(connection)
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def close(self) -> Deferred[None]:
        """Close every connection; fire once they are closed."""
        self._idle.clear()
        closing = [connection.close() for connection in list(self._open)]
        return gatherResults(closing).addCallback(lambda _: None)
