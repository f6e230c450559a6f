"""
A relayed request and its answer as the API's front has them: the
request as it was read (:class:`WireRequest`: what the relay and the
API's checks read of it), the answer written back as HTTP/1.1 bytes
(:class:`WireAnswer`: status, headers, then the body whole, or streamed
with its length, or chunked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.web.http import RESPONSES
from twisted.web.http_headers import Headers

from turberfield_twisted.http.web import error_parts
from turberfield_twisted.worker.wire import RawHeaders

if TYPE_CHECKING:
    from turberfield_twisted.http.front import ApiFront

__all__ = ["WireAnswer", "WireRequest"]


@attrs.define(eq=False, slots=False)
class WireRequest:
    """
    A relayed request as the front read it: what the relay, the API's
    checks and the site's ``log`` read of a request (``code``, once it is
    answered; checks may note more on it, as on a Twisted request).
    """

    method: bytes
    uri: bytes
    path: bytes
    headers: RawHeaders
    keep_alive: bool
    peer: IAddress | None = None
    relayed: bool = True
    code: int = 0

    def getClientAddress(self) -> IAddress | None:
        """Who asked (the connection's peer), as Twisted's request gives it."""
        return self.peer

    def getHeader(self, key: bytes) -> bytes | None:
        """The last value of header ``key`` (any case), as Twisted's request gives it."""
        lower, found = key.lower(), None
        for name, value in self.headers:
            if name.lower() == lower:
                found = value
        return found

    @property
    def requestHeaders(self) -> Headers:
        """The headers as Twisted's request has them."""
        out = Headers()
        for name, value in self.headers:
            out.addRawHeader(name, value)
        return out


class WireAnswer:
    """
    A relayed answer written as bytes on the front's connection (status,
    headers, then the body whole, or streamed with its length or chunked).
    """

    def __init__(self, front: ApiFront, request: WireRequest):
        self.front = front
        self.request = request
        self.keep_alive = request.keep_alive
        self.headless = request.method == b"HEAD"
        self._chunked = False

    def _head(self, status: int, headers: RawHeaders, framing: bytes) -> list[bytes]:
        self.request.code = status
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, RESPONSES.get(status, b"Unknown Status"))]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        lines.append(framing)
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        return lines

    def _bodiless(self, status: int) -> bool:
        return self.headless or status in (204, 304) or 100 <= status < 200

    def whole(self, status: int, headers: RawHeaders, body: bytes) -> None:
        """See :meth:`~.relay.Answer.whole`."""
        if self._bodiless(status):
            self.front.write(b"".join(self._head(status, headers, b"")))
        else:
            lines = self._head(status, headers, b"Content-Length: %d\r\n" % len(body))
            lines.append(body)
            self.front.write(b"".join(lines))
        self.front.answered(self)

    def start(self, status: int, headers: RawHeaders, length: int | None) -> None:
        """See :meth:`~.relay.Answer.start`."""
        if self._bodiless(status):
            framing = b""
            self.headless = True  # nothing of a body is written
        elif length is not None:
            framing = b"Content-Length: %d\r\n" % length
        else:
            framing, self._chunked = b"Transfer-Encoding: chunked\r\n", True
        self.front.write(b"".join(self._head(status, headers, framing)))

    def write(self, data: bytes) -> None:
        """See :meth:`~.relay.Answer.write`."""
        if self.headless or not data:
            return
        if self._chunked:
            self.front.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.front.write(data)

    def finish(self) -> None:
        """See :meth:`~.relay.Answer.finish`."""
        if self._chunked:
            self.front.write(b"0\r\n\r\n")
        self.front.answered(self)

    def abort(self) -> None:
        """See :meth:`~.relay.Answer.abort`."""
        self.front.abort()

    def stream_from(self, producer: IPushProducer | None) -> None:
        """See :meth:`~.relay.Answer.stream_from`."""
        self.front.stream_from(producer)

    def error(self, exc: BaseException) -> None:
        """Answer ``exc`` from the API's one error table, as JSON."""
        status, extra, body = error_parts(exc)
        headers = [(b"Content-Type", b"application/json"),
                   *((name.encode("ascii"), value.encode("ascii"))
                     for name, value in extra.items())]
        self.headless = False
        self.whole(status, headers, body)
