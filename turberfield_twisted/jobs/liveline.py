"""
One job's kept-alive connection for its liveness checks
(:class:`KeptLine`), read only when its answer is judged.

Once connected, the reactor stops reading the connection
(``pauseProducing``): an answer arriving does not wake the daemon. The
check's request is written on the socket itself when it takes it whole
(no writer registered with the reactor), and at the check's judge moment
:meth:`KeptLine.pull` takes what came with non-blocking ``recv`` calls
on the socket (``ISystemHandle``), read by
:class:`~turberfield_twisted.worker.wire.ResponseReader`. A connection
whose transport has no socket (a test's ``StringTransport``) is read as
Twisted delivers its bytes (``dataReceived``); either way :attr:`result`
is what the judge looks at.

Whatever comes while no check waits for it (a late answer, bytes
unasked) closes the connection: an answer is never taken for a later
check.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.internet.interfaces import ISystemHandle
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from turberfield_twisted.worker.wire import RawHeaders, ResponseReader, WireError

__all__ = ["GUID_LIMIT", "Answer", "KeptLine", "Unanswered"]

#: The largest body whose guid is read (a worker's /health answer is a few dozen bytes):
#: a longer one is read through and passes on its status alone.
GUID_LIMIT = 4096

#: How much one ``recv`` takes (a health answer is a few hundred bytes).
CHUNK = 65536

#: A whole answer: its status and body (None: too long to be read for a guid).
Answer = tuple[int, bytes | None]


class Unanswered(Exception):
    """The connection closed before any byte of the answer came."""


class KeptLine(Protocol):
    """
    One job's connection to its worker, carrying one check at a time:
    :meth:`ask`, then :meth:`pull` at the judge moment and read
    :attr:`result`. ``dropped`` is called if the connection closes, known
    before the judge moment, before any byte of the answer came.
    """

    def __init__(self, dropped: Callable[[KeptLine], None]):
        self.reader = ResponseReader(self)
        self.dropped = dropped
        #: The check's answer once whole, or how it failed; None: nothing whole yet.
        self.result: Answer | Exception | None = None
        self.closed = False
        #: How many requests it has carried.
        self.asked = 0
        #: Whether a request went through the transport's buffer (none is sent directly since).
        self.buffered = False
        self._socket: socket.socket | None = None
        self._waiting = False
        self._heard = False
        self._code = 0
        self._body: list[bytes] | None = []
        self._size = 0

    def connectionMade(self) -> None:
        system = ISystemHandle(self.transport, None)
        handle = None if system is None else system.getHandle()
        if isinstance(handle, socket.socket):  # a real TCP connection (not a test's fake)
            self._socket = handle
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def abort(self) -> None:
        """Close it at once, and wait for no answer on it."""
        self.closed, self._waiting = True, False
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def idle(self) -> bool:
        """
        Whether it may carry a check: open, and nothing came since its last
        answer (the worker did not close it). If not, it is closed.
        """
        if self.closed or self._socket is None:
            return not self.closed
        try:
            self._socket.recv(CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            pass
        self.abort()  # closed by the worker (b""), or bytes nobody asked for
        return False

    def ask(self, request: bytes) -> None:
        """Send ``request``: its answer becomes :attr:`result`."""
        assert self.transport is not None and not self._waiting
        self.result, self._waiting = None, True
        self._heard, self._code, self._body, self._size = False, 0, [], 0
        self.asked += 1
        self.reader.expect()
        self._send(request)

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

    def pull(self) -> Answer | Exception | None:
        """
        What came for the check (the judge moment): read the socket without
        waiting, then :attr:`result`. A connection that ended is closed.
        """
        sock = self._socket
        while sock is not None and self._waiting:
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._ended()
                if not self.closed:
                    self.abort()
                break
            self._feed(data)
            if len(data) < CHUNK:
                break  # the rest, if any, has not come yet
        return self.result

    def dataReceived(self, data: bytes) -> None:
        if not self._waiting:  # late or unasked: this connection's answers can't be told apart
            self.abort()
            return
        self._feed(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        if self._waiting:
            self._ended()
            if isinstance(self.result, Unanswered):
                self.dropped(self)

    def _feed(self, data: bytes) -> None:
        self._heard = True
        try:
            self.reader.feed(data)
        except WireError as exc:
            self._fail(exc)

    def _ended(self) -> None:
        """The connection closed while an answer was awaited."""
        if not self._heard:
            self._fail(Unanswered("the connection closed before an answer"))
            return
        try:
            self.reader.eof()
        except WireError as exc:
            self._fail(exc)
            return
        if self._waiting:
            self._fail(WireError("the connection closed before an answer"))

    def _fail(self, exc: Exception) -> None:
        self.result, self._waiting = exc, False
        if not self.closed:
            self.abort()

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
        if self._waiting:  # else an answer nobody asked for (not reusable): it closes
            self._waiting = False
            body = self._body
            self.result = (self._code, None if body is None else b"".join(body))
        if not reusable:
            self.closed = True
            assert self.transport is not None
            self.transport.loseConnection()
