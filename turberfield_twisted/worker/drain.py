"""
Drain: how a worker stops without dropping a request.

The runtime serves its app with a :class:`DrainingSite`, which knows every
connection it has open. On SIGTERM the runtime stops listening (on its own
port, and on its copy of a service's shared socket: connections still
waiting there are taken by the service's other instances) and calls
:meth:`DrainingSite.drain`:

- a keep-alive connection that is idle (it has been answered and holds
  no request now) is closed at once; a client that sends on it at that
  very moment sees it closed before any byte of an answer, the one case
  where HTTP lets it send an idempotent request again (RFC 9112 9.3.1);
- a connection with a request in flight gets its answer, with
  ``Connection: close`` if its head is not written yet, and is closed
  after it;
- a connection accepted but not yet asked anything gets its first
  request answered, with ``Connection: close``.

:meth:`~DrainingSite.drain` fires once the last connection has closed;
the daemon's SIGKILL after ``stop_timeout`` bounds how long that takes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.server import Site

__all__ = ["DrainingChannel", "DrainingSite"]


class DrainingChannel(HTTPChannel):
    """
    An HTTP channel that its :class:`DrainingSite` can ask to end: at once
    if it is idle, else after the answer it owes.
    """

    site: DrainingSite
    #: Asked to end: no answer from now on keeps the connection open.
    draining = False
    #: Requests answered on it so far.
    answered = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.opened(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.site.closed(self)

    def checkPersistence(self, request: IRequest, version: bytes) -> bool:
        """While draining, every answer says ``Connection: close`` and ends the connection."""
        if self.draining:
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        persistent: bool = super().checkPersistence(request, version)
        return persistent

    def requestDone(self, request: IRequest) -> None:
        self.answered += 1
        super().requestDone(request)

    def drain(self) -> None:
        """End this connection once it owes no answer (at once, if it is an idle keep-alive)."""
        if self.draining:
            return
        self.draining = True
        if not self.requests:
            if self.answered:
                self.loseConnection()  # idle keep-alive
            return  # a new connection: its first request is answered, then it ends
        self.persistent = False
        for request in self.requests:
            if not request.startedWriting:
                request.responseHeaders.setRawHeaders(b"Connection", [b"close"])


class DrainingSite(Site):
    """A Site whose connections can be drained (see the module)."""

    # A plain HTTP/1.1 channel (workers speak no HTTP/2), where HTTPFactory's
    # stub declares its TLS-negotiating wrapper.
    protocol = DrainingChannel  # type: ignore[assignment]

    def __init__(self, resource: Any, **kwargs: Any):
        super().__init__(resource, **kwargs)
        self.channels: set[DrainingChannel] = set()
        self._drained: list[Deferred[None]] = []
        self.draining = False

    def opened(self, channel: DrainingChannel) -> None:
        """``channel`` is connected; one opened while draining is drained too."""
        self.channels.add(channel)
        if self.draining:
            channel.drain()

    def closed(self, channel: DrainingChannel) -> None:
        """``channel`` has closed: the drain is over once none is left."""
        self.channels.discard(channel)
        if self.draining and not self.channels:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def drain(self) -> Deferred[None]:
        """Drain every connection (see the module); fire once none is open."""
        self.draining = True
        if not self.channels:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        for channel in list(self.channels):
            channel.drain()
        return d
