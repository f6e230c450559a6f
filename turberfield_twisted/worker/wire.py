"""
HTTP/1.1 answers read straight off a connection, for the daemon's hot
paths (the readiness check of every new worker, the relay): the head and
the body's framing are parsed by httptools (llhttp, the C parser uvicorn
and Node use), and the body is handed on as the bytes that came, with no
request, header or URL objects of Twisted's HTTP client on the way.

:class:`ResponseReader` reads one answer after another from a
connection's bytes and tells its :class:`Sink` of each: its head
(status, headers, length), the pieces of its body, its end.
:class:`HealthGet` is a client of one request per connection, treq-like
enough for :class:`~turberfield_twisted.jobs.readiness.HealthProbe`.

httptools is imported with this module, which the worker runtime never
loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import attrs
import httptools
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.python.failure import Failure

from turberfield_twisted.worker.endpoint import CONNECT_TIMEOUT, client_endpoint

if TYPE_CHECKING:
    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["Fetched", "HealthGet", "ResponseReader", "Sink", "WireError"]

#: Headers of one answer as they came: (name, value) pairs, names as the worker wrote them.
RawHeaders = list[tuple[bytes, bytes]]


class WireError(Exception):
    """What came is not an HTTP/1.1 answer (or it ended before its end)."""


class Sink(Protocol):
    """Who hears of an answer read by :class:`ResponseReader`; none of these may raise."""

    def head(self, status: int, headers: RawHeaders, length: int | None) -> None:
        """Its status and headers; ``length`` from Content-Length (None: chunked or to EOF)."""

    def body(self, data: bytes) -> None:
        """A piece of its body (de-chunked)."""

    def end(self, reusable: bool) -> None:
        """It ended; ``reusable``: the connection may carry another request."""


class ResponseReader:
    """
    Read answers from a connection's bytes (:meth:`feed`, :meth:`eof`) and
    tell ``sink`` of each. Call :meth:`expect` as each request is sent:
    an answer that begins unasked sets ``extra`` (the connection is then
    not reusable). Interim answers (1xx but 101) are skipped. The answer to
    a HEAD request ends with its head (and its connection is not reusable).
    """

    def __init__(self, sink: Sink):
        self.sink = sink
        self._parser = httptools.HttpResponseParser(self)
        self._headers: RawHeaders = []
        self._length: int | None = None
        self._to_eof = False
        self._in_head = False
        self._in_body = False
        self._interim = False
        self._chunked = False
        self._headless = False
        self._skip = False
        self._awaited = False
        #: An answer began that no request asked for.
        self.extra = False
        #: Answers that ended.
        self.ended = 0

    def expect(self, headless: bool = False) -> None:
        """
        A request was sent: its answer may come (``headless``: it is to a HEAD
        request, and has no body whatever its head says).
        """
        self._awaited, self._headless = True, headless

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raise :class:`WireError` if it is not HTTP."""
        if self._skip:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise WireError(f"not an HTTP answer: {exc}") from None

    def eof(self) -> None:
        """
        The connection closed: an answer read to EOF ends here; raise
        :class:`WireError` if one was cut short.
        """
        if self._in_body and self._to_eof:
            self._finish(False)
        elif self._in_head or self._in_body:
            raise WireError("the connection closed before the answer ended")

    # -- httptools' callbacks ----------------------------------------------

    def on_message_begin(self) -> None:
        if not self._awaited:
            self.extra = True
        self._awaited = False
        self._headers, self._length, self._in_head = [], None, True
        self._chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length":
            self._length = int(value)
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self._chunked = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._in_head = False
        self._interim = 100 <= status < 200 and status != 101
        if self._interim:
            self._awaited = True  # the answer itself is still to come
            return
        chunked = self._chunked
        bodiless = self._headless or status in (204, 304)
        self._to_eof = not bodiless and not chunked and self._length is None
        self._in_body = True
        self.sink.head(status, self._headers, None if chunked else self._length)
        if self._headless:
            self._skip = True  # whatever comes is the body a HEAD has not
            self._finish(False)

    def on_body(self, data: bytes) -> None:
        if self._in_body:
            self.sink.body(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._in_body:
            self._finish(self._parser.should_keep_alive())

    def _finish(self, reusable: bool) -> None:
        self._in_body = False
        self.ended += 1
        self.sink.end(reusable and not self.extra)


@attrs.frozen
class Fetched:
    """An answer read whole: its status (``code``, as treq names it) and body."""

    code: int
    body: bytes

    def content(self) -> Deferred[bytes]:
        """The body (treq's name for it)."""
        return succeed(self.body)


class _OneShot(TwistedProtocol):
    """Send ``request``, read one answer of at most ``limit`` bytes, close."""

    def __init__(self, request: bytes, limit: int, headless: bool):
        self.request = request
        self.limit = limit
        self.done: Deferred[Fetched] = Deferred(lambda _: self._close())
        self._reader = ResponseReader(self)
        self._reader.expect(headless)
        self._status = 0
        self._body: list[bytes] = []
        self._size = 0

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _fail(self, why: str) -> None:
        self._close()
        if not self.done.called:
            self.done.errback(WireError(why))

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        try:
            self._reader.feed(data)
        except WireError as exc:
            self._fail(str(exc))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        try:
            self._reader.eof()
        except WireError as exc:
            self.done.errback(exc)
            return
        if not self.done.called:
            self.done.errback(reason if not reason.check(ConnectionDone)
                              else WireError("no answer"))

    def head(self, status: int, headers: RawHeaders, length: int | None) -> None:
        self._status = status
        if length is not None and length > self.limit:
            self._fail(f"an answer of {length} bytes, over {self.limit}")

    def body(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.limit:
            self._fail(f"an answer over {self.limit} bytes")
        else:
            self._body.append(data)

    def end(self, reusable: bool) -> None:
        if not self.done.called:
            self.done.callback(Fetched(self._status, b"".join(self._body)))
            self._close()


class HealthGet:
    """
    ``get(url, timeout=, reactor=)`` as treq's (what a health check asks):
    one plain ``GET`` on a connection of its own, closed after the answer,
    whose body is read whole up to ``limit`` bytes. It fires with a
    :class:`Fetched`, or fails (refused, no answer in ``timeout`` seconds,
    not HTTP, too long).
    """

    def __init__(self, reactor: IClientReactor, limit: int = 64 * 1024):
        self.reactor = reactor
        self.limit = limit

    def get(self, url: str, timeout: float = CONNECT_TIMEOUT,
            reactor: IReactorTime | None = None) -> Deferred[Fetched]:
        """
        ``GET url`` (``http://HOST:PORT/PATH``): its answer within ``timeout``
        seconds (on ``reactor``'s clock, if given: treq's keyword).
        """
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"not an http://HOST:PORT/ URL: {url[:80]!r}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                   "Connection: close\r\n\r\n").encode("ascii")
        endpoint = client_endpoint(self.reactor, parts.hostname, parts.port, timeout)
        exchange = _OneShot(request, self.limit, headless=False)
        factory = Factory.forProtocol(lambda: exchange)
        factory.noisy = False
        connecting = endpoint.connect(factory)

        def connected(_: object) -> Deferred[Fetched]:
            return exchange.done

        answer: Deferred[Fetched] = connecting.addCallback(connected)
        return answer.addTimeout(timeout, reactor or self.reactor)
