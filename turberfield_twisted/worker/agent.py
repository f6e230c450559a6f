"""
HTTP agents that reach a literal IP address directly.

Twisted's default :class:`~twisted.web.client.Agent` connects through a
``HostnameEndpoint`` even when the host is an IP address; that endpoint
takes about 300 ms to give up on a refused connection (against well under
1 ms for a ``TCP4ClientEndpoint``), which made every readiness poll of a
worker that did not listen yet cost a third of a second. Workers, the
daemon and web-hook receivers are almost always reached by IP address.

Imported only when a client is first built: the worker runtime does not
load it until its app calls the initiator.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.web.client import URI, Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgent, IAgentEndpointFactory
from zope.interface import implementer

if TYPE_CHECKING:
    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["LiteralIPEndpoints", "QuietEndpoint", "client_endpoint", "make_agent", "quiet_pool"]

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


@implementer(IStreamClientEndpoint)
class QuietEndpoint:
    """
    ``endpoint``, whose connections are not logged: the factory of each
    (the pool's) is made quiet (``noisy = False``) before it connects.
    """

    def __init__(self, endpoint: IStreamClientEndpoint):
        self._endpoint = endpoint

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect as ``endpoint`` does, with ``protocolFactory`` quiet."""
        if isinstance(protocolFactory, Factory):  # as the pool's is
            protocolFactory.noisy = False
        return self._endpoint.connect(protocolFactory)


@implementer(IAgentEndpointFactory)
class LiteralIPEndpoints:
    """
    Endpoints for an Agent, each a :class:`QuietEndpoint`: :func:`client_endpoint`
    for ``http``, the same wrapped in TLS (checked as a browser would) for ``https``.
    """

    def __init__(self, reactor: IClientReactor, timeout: float = CONNECT_TIMEOUT,
                 ca_pem: bytes | None = None):
        self._reactor = reactor
        self._timeout = timeout
        self._ca_pem = ca_pem
        self._tls: BrowserLikePolicyForHTTPS | None = None

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """The endpoint for ``uri``'s host and port."""
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("the host of the URI is not ASCII") from None
        endpoint = client_endpoint(self._reactor, host, uri.port, self._timeout)
        if uri.scheme == b"http":
            return QuietEndpoint(endpoint)
        if uri.scheme == b"https":
            if self._tls is None:
                self._tls = _policy(self._ca_pem)
            bare = uri.host.strip(b"[]")
            return QuietEndpoint(wrapClientTLS(self._tls.creatorForNetloc(bare, uri.port),
                                               endpoint))
        raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")


def _policy(ca_pem: bytes | None) -> BrowserLikePolicyForHTTPS:
    """Check servers as a browser does: against the CA(s) in ``ca_pem``, else the system's."""
    if not ca_pem:
        return BrowserLikePolicyForHTTPS()
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    found = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", ca_pem,
                       flags=re.DOTALL)
    if not found:
        raise ValueError("the CA given holds no PEM certificate")
    return BrowserLikePolicyForHTTPS(
        trustRoot=trustRootFromCertificates([Certificate.loadPEM(pem) for pem in found]))


def make_agent(reactor: IClientReactor, pool: HTTPConnectionPool | None = None,
               ca_pem: bytes | None = None) -> IAgent:
    """
    An :class:`Agent` on ``pool`` that connects to IP addresses directly;
    https servers are checked against the CA(s) in ``ca_pem`` (PEM), else
    against the system's store.
    """
    return Agent.usingEndpointFactory(reactor, LiteralIPEndpoints(reactor, ca_pem=ca_pem),
                                      pool=pool)


def quiet_pool(reactor: IReactorTime, persistent: bool = True,
               per_host: int = 4) -> HTTPConnectionPool:
    """
    A connection pool that keeps at most ``per_host`` idle connections to
    each host and does not retry a request on its own; its connections
    are not logged when :func:`make_agent`'s endpoints make them.
    """
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool.maxPersistentPerHost = per_host
    pool.retryAutomatically = False
    return pool
