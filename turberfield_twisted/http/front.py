"""
The control API's connections: relayed requests are read here, and the
first request of any other kind hands the connection to Twisted's HTTP
server (the site's :class:`~.channel.ApiChannel`, the router's routes).

Most of what the API carries is relayed requests, and a front end that
routes its users to their workers keeps its connections for them alone:
reading each of those as a Twisted ``Request`` (every header line in
Python, a request object, its resource lookup) and writing the answer
back through it cost more than everything else the relay does. Here a
request is taken as bytes: its line is checked against the mounts
(``/jobs/{guid}/proxy/...``, a service's), its head is parsed by
httptools, its body taken by its ``Content-Length``, and the worker's
answer is written back as bytes (:class:`WireAnswer`).

Anything this does not take, it hands over whole, at a request's first
byte, to the channel that answers everything else, and the connection is
that channel's from then on: a path under no mount, a request line or
head past the channel's bounds (which it answers 414 or 431), a body over
``max_body`` (413), a chunked body, ``Expect``, HTTP/1.0, anything
httptools will not parse. A relayed request that does not arrive whole
within the site's ``read_timeout`` is handed over too and refused 408, as
the channel would. Requests sent before their predecessor's answer
(pipelined) are answered in order; reading stops while they pile up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httptools
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from turberfield_twisted.http.channel import MAX_HEAD, MAX_LINE
from turberfield_twisted.http.raw import WireAnswer, WireRequest
from turberfield_twisted.http.upstream import Mount
from turberfield_twisted.http.web import log_error
from turberfield_twisted.worker.wire import RawHeaders

if TYPE_CHECKING:
    from turberfield_twisted.http.site import ApiSite

__all__ = ["ApiFront"]


class _Head:
    """
    httptools' callbacks for one request head: its target and headers, and
    what the front asks of them (read as they come): the body's length,
    whether the front may take it (``odd``: chunked, ``Expect``, a header
    line over the channel's bound), whether it closes the connection.
    """

    def __init__(self) -> None:
        self.url = b""
        self.headers: RawHeaders = []
        self.length = 0
        self.odd = False
        self.close = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            self.length = int(value)  # httptools has checked it is a number, and one
        elif lower in (b"transfer-encoding", b"expect") or len(value) > MAX_LINE:
            self.odd = True
        elif lower == b"connection" and b"close" in value.lower():
            self.close = True


#: What :meth:`ApiFront._read` found at the start of the buffer.
_WAIT, _HAND_OVER = object(), object()


class ApiFront(Protocol):
    """
    One connection to the control API (see the module): relayed requests
    read and answered here until the first that is not, then ``site``'s
    channel's.
    """

    log = Logger()

    def __init__(self, site: ApiSite, addr: IAddress):
        self.site = site
        self.addr = addr
        self.reactor = site.reactor
        #: The site's channel, once the connection is handed over.
        self.inner: Protocol | None = None
        self._buffer = bytearray()
        self._answer: WireAnswer | None = None
        self._done: Deferred[int | str] | None = None
        self._paused = False
        self._serving = False
        self._streaming = False
        self._clock: IDelayedCall | None = None
        self._idle: IDelayedCall | None = None
        self._last = 0.0
        self._peer: IAddress | None = None

    # -- the connection ------------------------------------------------------

    def connectionMade(self) -> None:
        assert self.transport is not None
        self._peer = self.transport.getPeer()
        self._last = self.reactor.seconds()
        timeout = self.site.timeOut
        if timeout:
            self._idle = self.reactor.callLater(timeout, self._idle_check)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        self._buffer += data
        if self._answer is None:
            self._next()
        elif not self._paused and len(self._buffer) > MAX_HEAD + self.site.max_body:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for call in (self._clock, self._idle):
            if call is not None and call.active():
                call.cancel()
        if self.inner is not None:
            self.inner.connectionLost(reason)
            return
        done, self._done, self._answer = self._done, None, None
        if done is not None and not done.called:
            done.cancel()  # the caller went away: the relay gives the request up

    def write(self, data: bytes) -> None:
        """Write ``data`` to the caller."""
        assert self.transport is not None
        self.transport.write(data)

    def abort(self) -> None:
        """Drop the connection at once (an answer cut off)."""
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def stream_from(self, producer: IPushProducer | None) -> None:
        """Pause ``producer`` while the caller's connection is full (None: no more)."""
        assert self.transport is not None
        if producer is not None and not self._streaming:
            self._streaming = True
            self.transport.registerProducer(producer, True)  # type: ignore[attr-defined]
        elif producer is None and self._streaming:
            self._streaming = False
            self.transport.unregisterProducer()  # type: ignore[attr-defined]

    def _idle_check(self) -> None:
        """Close a connection idle for the site's ``timeOut`` (as its channel would)."""
        timeout = self.site.timeOut or 0
        left = self._last + timeout - self.reactor.seconds()
        if self.inner is not None:
            self._idle = None
        elif self._answer is not None or left > 0:
            self._idle = self.reactor.callLater(max(left, 1.0), self._idle_check)
        else:
            self._idle = None
            assert self.transport is not None
            self.transport.loseConnection()

    # -- reading requests ----------------------------------------------------

    def _next(self) -> None:
        """Serve what the buffer holds, one request at a time."""
        if self._serving:
            return  # the loop below goes on with it
        self._serving = True
        try:
            while self._answer is None and self.inner is None and self._buffer:
                found = self._read()
                if found is _WAIT:
                    self._start_clock()
                    return
                if found is _HAND_OVER:
                    self._hand_over()
                    return
                self._stop_clock()
                self._serve(*found)
        finally:
            self._serving = False

    def _read(self) -> Any:
        """
        The request at the start of the buffer, taken off it: ``(request, mount,
        name, body)``; or :data:`_WAIT` for more of it, or :data:`_HAND_OVER`.
        """
        buf = self._buffer
        line_end = buf.find(b"\r\n", 0, MAX_LINE + 2)
        if line_end <= 0:
            return _HAND_OVER if line_end == 0 or len(buf) > MAX_LINE else _WAIT
        parts = bytes(buf[:line_end]).split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1":
            return _HAND_OVER
        method, uri = parts[0], parts[1]
        path = uri.partition(b"?")[0]
        for mount in self.site.mounts:
            match = mount.pattern.match(path)
            if match is not None:
                break
        else:
            return _HAND_OVER
        head_end = buf.find(b"\r\n\r\n", line_end, MAX_HEAD + 4)
        if head_end < 0:
            return _HAND_OVER if len(buf) >= MAX_HEAD + 4 else _WAIT
        head = _Head()
        try:
            httptools.HttpRequestParser(head).feed_data(bytes(buf[:head_end + 4]))
        except httptools.HttpParserError:
            return _HAND_OVER  # the channel says what is wrong with it
        if head.odd or head.length > self.site.max_body:
            return _HAND_OVER
        whole = head_end + 4 + head.length
        if len(buf) < whole:
            return _WAIT
        body = bytes(buf[head_end + 4:whole])
        del buf[:whole]
        request = WireRequest(method, head.url, path, head.headers, not head.close, self._peer)
        return request, mount, match.group(1).decode("ascii"), body

    def _serve(self, request: WireRequest, mount: Mount, name: str, body: bytes) -> None:
        answer = WireAnswer(self, request)
        self._answer = answer
        relay_to = self.site.relay_to
        assert relay_to is not None  # there are mounts
        try:
            done = relay_to(request, mount, name, answer,
                            lambda: (request.headers, body, len(body)))
        except Exception as exc:
            self._error(answer, request, exc)
            return
        if self._answer is answer:  # not answered at once
            self._done = done
        done.addErrback(self._failed, answer, request)

    def _failed(self, failure: Failure, answer: WireAnswer, request: WireRequest) -> None:
        if failure.check(CancelledError) or self._answer is not answer:
            return
        assert failure.value is not None
        self._error(answer, request, failure.value)

    def _error(self, answer: WireAnswer, request: WireRequest, exc: BaseException) -> None:
        log_error(self.log, request, Failure(exc))  # type: ignore[arg-type]
        answer.error(exc)

    def answered(self, answer: WireAnswer) -> None:
        """``answer`` is written whole: the site logs it; serve the next request, or close."""
        if answer is not self._answer:
            return
        self._answer, self._done = None, None
        self._last = self.reactor.seconds()
        self.site.log(answer.request)  # (its access log leaves a relayed request out)
        if not answer.keep_alive:
            assert self.transport is not None
            self.transport.loseConnection()
            return
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]
        self._next()

    # -- the request clock, and handing over ---------------------------------

    def _start_clock(self) -> None:
        timeout = self.site.read_timeout
        if timeout and self._clock is None:
            self._clock = self.reactor.callLater(timeout, self._too_slow, timeout)

    def _stop_clock(self) -> None:
        clock, self._clock = self._clock, None
        if clock is not None and clock.active():
            clock.cancel()

    def _too_slow(self, timeout: float) -> None:
        self._clock = None
        channel = self._hand_over()
        channel.refuse(408, f"the request did not arrive whole within {timeout:g}s")

    def _hand_over(self) -> Any:
        """From now on the connection is the site's channel's, what is buffered first."""
        self._stop_clock()
        if self._idle is not None and self._idle.active():
            self._idle.cancel()  # the channel has its own
        self._idle = None
        channel = self.site.channel(self.addr)
        self.inner = channel
        channel.makeConnection(self.transport)
        data, self._buffer = bytes(self._buffer), bytearray()
        if data:
            channel.dataReceived(data)
        return channel
