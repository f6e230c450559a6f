"""
Serve a site on a loopback port for a test, and take it down whole: the
port closed and every connection it accepted gone from the reactor (trial
fails a test that leaves one behind). Unless told which port, it is the
first of a :func:`~turberfield_twisted.testing.ports.free_ports` block,
held until then: never one of the kernel's ephemeral ports, where a
connection to it once it is down could meet itself.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.protocols.policies import WrappingFactory

from turberfield_twisted.testing.ports import PortRange, free_ports

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
    """
    A factory served on a port (``address``: its host and port); :meth:`down`
    ends it, and lets ``held`` (the port's block, if it was chosen for it) go.
    """

    def __init__(self, port: Any, factory: _Tracked, held: PortRange | None = None):
        self.port = port
        self.held = held
        self._factory = factory
        host = port.getHost()
        self.address: tuple[str, int] = (host.host, host.port)

    @property
    def connections(self) -> int:
        """How many connections are open."""
        return len(self._factory.protocols)

    async def down(self) -> None:
        """
        Stop listening, cut every open connection and wait until each is
        gone; then let the port's block go.
        """
        try:
            await maybeDeferred(self.port.stopListening)
            for protocol in list(self._factory.protocols):
                protocol.transport.abortConnection()
            await self._factory.idle()
        finally:
            if self.held is not None:
                self.held.release()


async def serve(reactor: Any, factory: Any, port: int | None = None,
                interface: str = "127.0.0.1") -> Listening:
    """
    Serve ``factory`` (a Site, say) on ``interface:port``; with no ``port``,
    on the first port of a :func:`free_ports` block, held until
    :meth:`Listening.down`.
    """
    kind = endpoints.TCP6ServerEndpoint if ":" in interface else endpoints.TCP4ServerEndpoint
    held = free_ports(1, addr=interface) if port is None else None
    tracked = _Tracked(factory)
    try:
        listening = await kind(reactor, held.low if held is not None else port,
                               interface=interface).listen(tracked)
    except BaseException:
        if held is not None:
            held.release()
        raise
    return Listening(listening, tracked, held)
