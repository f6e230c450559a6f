"""
Serve a site on a loopback port for a test, and take it down whole: the
port closed and every connection it accepted gone from the reactor (trial
fails a test that leaves one behind).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.protocols.policies import WrappingFactory

__all__ = ["Listening", "serve"]


class _Tracked(WrappingFactory):
    """A WrappingFactory that says when its last connection is gone."""

    def __init__(self, wrapped: Any):
        super().__init__(wrapped)
        self._idle: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def idle(self) -> Deferred[None]:
        """Fire once no connection is open."""
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d


class Listening:
    """A factory served on a port (``address``: its host and port); :meth:`down` ends it."""

    def __init__(self, port: Any, factory: _Tracked):
        self.port = port
        self._factory = factory
        host = port.getHost()
        self.address: tuple[str, int] = (host.host, host.port)

    @property
    def connections(self) -> int:
        """How many connections are open."""
        return len(self._factory.protocols)

    async def down(self) -> None:
        """Stop listening, cut every open connection and wait until each is gone."""
        await maybeDeferred(self.port.stopListening)
        for protocol in list(self._factory.protocols):
            protocol.transport.abortConnection()
        await self._factory.idle()


async def serve(reactor: Any, factory: Any, port: int = 0,
                interface: str = "127.0.0.1") -> Listening:
    """Serve ``factory`` (a Site, say) on ``interface:port`` (0: any free port)."""
    kind = endpoints.TCP6ServerEndpoint if ":" in interface else endpoints.TCP4ServerEndpoint
    tracked = _Tracked(factory)
    return Listening(await kind(reactor, port, interface=interface).listen(tracked), tracked)
