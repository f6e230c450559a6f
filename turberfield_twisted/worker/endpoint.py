"""
Client endpoints that reach a literal IP address directly.

Twisted's ``HostnameEndpoint`` takes about 300 ms to give up on a refused
connection even when the host is an IP address (against well under 1 ms
for a ``TCP4ClientEndpoint``): every readiness check of a worker that did
not listen yet would cost a third of a second. Workers, the daemon and
web-hook receivers are almost always reached by IP address. This module
loads nothing of Twisted's HTTP client.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint

if TYPE_CHECKING:
    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["CONNECT_TIMEOUT", "client_endpoint"]

#: Seconds a connection may take to be accepted.
CONNECT_TIMEOUT = 10.0


def client_endpoint(reactor: IClientReactor, host: str, port: int,
                    timeout: float = CONNECT_TIMEOUT) -> IStreamClientEndpoint:
    """
    An endpoint to ``host``:``port``: straight TCP (v4 or v6) for an IP
    address (brackets allowed), a ``HostnameEndpoint`` for a name.
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    kind = TCP6ClientEndpoint if ip.version == 6 else TCP4ClientEndpoint
    return kind(reactor, bare, port, timeout=timeout)
