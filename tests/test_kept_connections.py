"""
Why ``conftest._no_kept_connection`` empties treq's default pool after each
test: a server whose port has stopped listening still answers on the
connections it accepted, so a later server on the same port (free_ports
hands ports out again) is not the one a kept connection reaches.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
import treq
import treq.api
from twisted.web.resource import Resource
from twisted.web.server import Site

from turberfield_twisted.testing.ports import free_ports


class _Says(Resource):
    isLeaf = True

    def __init__(self, word: bytes):
        super().__init__()
        self.word = word

    def render_GET(self, request: Any) -> bytes:
        return self.word


async def _get(reactor: Any, url: str) -> bytes:
    response = await treq.get(url, timeout=10, reactor=reactor)
    return bytes(await response.content())


@pytest_twisted.ensureDeferred
async def test_a_kept_connection_reaches_the_old_server_until_the_pool_lets_it_go(reactor):
    """
    The old server's port is closed and a new one listens there: treq's kept
    connection still gets the old server's answer; once the pool has let its
    connections go (as the fixture does after each test), the new one answers.
    """
    with free_ports(1) as ports:
        url = f"http://127.0.0.1:{ports.low}/"
        old = reactor.listenTCP(ports.low, Site(_Says(b"old")), interface="127.0.0.1")
        assert await _get(reactor, url) == b"old"
        await old.stopListening()
        new = reactor.listenTCP(ports.low, Site(_Says(b"new")), interface="127.0.0.1")
        try:
            assert await _get(reactor, url) == b"old"
            await treq.api.get_global_pool().closeCachedConnections()
            assert await _get(reactor, url) == b"new"
        finally:
            await new.stopListening()
            await treq.api.get_global_pool().closeCachedConnections()
