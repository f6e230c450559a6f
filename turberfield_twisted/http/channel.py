"""
The control API's HTTP channel: Twisted's, with bounds on how a request
arrives, each refused with a JSON error rather than a bare close:

- a request line longer than :data:`MAX_LINE` bytes: ``414``;
- a header line longer than that, or the request line and headers
  together over :data:`MAX_HEAD` bytes: ``431``;
- a request not whole (line, headers and body, chunked or not) within
  the site's ``read_timeout`` seconds of its request line: ``408``.

After the error the channel stops answering: it shuts its side of the
connection once the error is sent, reads and drops what the client still
sends (so that the client sees the answer rather than a reset), and
closes after :data:`DRAIN` seconds at most.
"""

from __future__ import annotations

import json
from functools import partial

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

__all__ = ["DRAIN", "MAX_HEAD", "MAX_LINE", "ApiChannel"]

#: The longest request line or header line, in bytes (Twisted's own bound).
MAX_LINE = HTTPChannel.MAX_LENGTH

#: The most bytes of request line and headers together (Twisted's own bound).
MAX_HEAD = HTTPChannel.totalHeadersSize

#: Seconds a refused client has to stop sending before its connection is closed.
DRAIN = 5.0


#: The reason phrase of each status the channel answers.
_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


class ApiChannel(HTTPChannel):
    """An HTTPChannel that answers 414, 431 and 408 (see the module) with JSON."""

    log = Logger()
    MAX_LENGTH = MAX_LINE
    totalHeadersSize = MAX_HEAD

    #: The next line is a request's first.
    _at_request_line = True
    #: Bytes of the current request's line and headers so far.
    _head_bytes = 0
    #: An error was answered: what the client sends from now on is dropped.
    _refused = False
    _deadline: IDelayedCall | None = None

    @property
    def read_timeout(self) -> float | None:
        """The site's ``read_timeout`` (None: no bound in time)."""
        return getattr(getattr(self, "site", None), "read_timeout", None)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # drained, and the idle timeout is not pushed back
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self._at_request_line and line:
            self._at_request_line = False
            self._head_bytes = 0
            self._start_clock()
        self._head_bytes += len(line)
        if self._head_bytes > self.totalHeadersSize:
            self._refuse(431, f"the request line and headers are over {self.totalHeadersSize}"
                              " bytes")
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._at_request_line:
            self._refuse(414, f"the request line is over {self.MAX_LENGTH} bytes")
        else:
            self._refuse(431, f"a header line is over {self.MAX_LENGTH} bytes")

    def allContentReceived(self) -> None:
        self._stop_clock()
        self._at_request_line = True
        super().allContentReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_clock()
        super().connectionLost(reason)

    # -- the clock of one request ------------------------------------------

    def _start_clock(self) -> None:
        timeout = self.read_timeout
        if timeout:
            self._deadline = self.callLater(timeout, partial(self._too_slow, timeout))

    def _stop_clock(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _too_slow(self, timeout: float) -> None:
        self._deadline = None
        self._refuse(408, f"the request did not arrive whole within {timeout:g}s")

    # -- refusing ----------------------------------------------------------

    def refuse(self, status: int, message: str) -> None:
        """
        Answer ``status`` (408, 414 or 431) with ``{"error": message}``, then
        drain and close (what the API's front asks of a connection it hands
        over with a request too slow to arrive).
        """
        self._refuse(status, message)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``{"error": message}``, then drain and close."""
        if self._refused or self.transport is None:
            return
        self._refused = True
        self._stop_clock()
        peer = str(self.transport.getPeer())
        self.log.info("HTTP {status} to {peer}: {error}", status=status, peer=peer,
                      error=message)
        body = json.dumps({"error": message}).encode("utf-8")
        head = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                % (status, _REASONS[status], len(body)))
        self.transport.write(head + body)
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is None:
            self.loseConnection()
            return
        half_close()
        self.setTimeout(DRAIN)  # then TimeoutMixin closes it
