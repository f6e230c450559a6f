"""
HTTP agents that reach a literal IP address directly.

Twisted's default :class:`~twisted.web.client.Agent` connects through a
``HostnameEndpoint`` even when the host is an IP address; that endpoint
takes about 300 ms to give up on a refused connection (against well under
1 ms for a ``TCP4ClientEndpoint``). The agents here connect through
:func:`~turberfield_twisted.worker.endpoint.client_endpoint` instead.

Imported only when a client is first built: the worker runtime does not
load it until its app calls the initiator.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.web.client import URI, Agent, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgent, IAgentEndpointFactory
from zope.interface import implementer

from turberfield_twisted.tlsgate import allow_tls
from turberfield_twisted.worker.endpoint import CONNECT_TIMEOUT, client_endpoint

if TYPE_CHECKING:  # for the type checker only (twisted.internet.ssl does not name it)
    from twisted.internet._sslverify import IOpenSSLTrustRoot

    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["LiteralIPEndpoints", "QuietEndpoint", "TLSEndpoint", "client_endpoint", "make_agent",
           "quiet_pool"]

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


@implementer(IStreamClientEndpoint)
class TLSEndpoint:
    """
    ``endpoint`` wrapped in TLS, the server checked by ``creator`` (from
    ``optionsForClientTLS``), as ``twisted.internet.endpoints.wrapClientTLS``
    wraps one. Built here, as that function can't be used in a process
    that deferred TLS (:mod:`~turberfield_twisted.tlsgate`): ``endpoints`` was imported without
    its TLS parts, and ``twisted.protocols.tls`` is loaded only now.
    """

    def __init__(self, creator: IOpenSSLClientConnectionCreator,
                 endpoint: IStreamClientEndpoint):
        self._creator = creator
        self._endpoint = endpoint

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect as ``endpoint`` does, through TLS; fire with ``protocolFactory``'s protocol."""
        from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

        wrapped = TLSMemoryBIOFactory(self._creator, True, protocolFactory)

        def inner(protocol: IProtocol) -> IProtocol:
            return cast(TLSMemoryBIOProtocol, protocol).wrappedProtocol

        return self._endpoint.connect(wrapped).addCallback(inner)


@implementer(IAgentEndpointFactory)
class LiteralIPEndpoints:
    """
    Endpoints for an Agent, each a :class:`QuietEndpoint`: :func:`client_endpoint`
    for ``http``, the same in TLS (a :class:`TLSEndpoint`, the server checked
    as a browser would) for ``https``: TLS is loaded then, if this process
    deferred it.
    """

    def __init__(self, reactor: IClientReactor, timeout: float = CONNECT_TIMEOUT,
                 ca_pem: bytes | None = None):
        self._reactor = reactor
        self._timeout = timeout
        self._ca_pem = ca_pem
        self._trust: tuple[IOpenSSLTrustRoot | None] | None = None

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
            allow_tls()
            from twisted.internet.ssl import optionsForClientTLS

            if self._trust is None:
                self._trust = (_trust_root(self._ca_pem),)
            bare = uri.host.strip(b"[]").decode("ascii")
            creator = optionsForClientTLS(bare, trustRoot=self._trust[0])
            return QuietEndpoint(TLSEndpoint(creator, endpoint))
        raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")


def _trust_root(ca_pem: bytes | None) -> IOpenSSLTrustRoot | None:
    """
    What servers are checked against: the CA(s) in ``ca_pem``, else (None)
    the system's store, as a browser would (``BrowserLikePolicyForHTTPS``).
    """
    if not ca_pem:
        return None
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    found = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", ca_pem,
                       flags=re.DOTALL)
    if not found:
        raise ValueError("the CA given holds no PEM certificate")
    return trustRootFromCertificates([Certificate.loadPEM(pem) for pem in found])


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
