"""
A web-hook subscriber for tests: a Klein app that records each POST it gets
and fires waiters as they arrive; :func:`listen` serves it on a loopback
port, and :meth:`Listening.down` takes it down as a crashed receiver goes
(its port closed, its open connections cut: see :mod:`.serving`).
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.web.server import Site

from turberfield_twisted.hooks.rules import verify_signature
from turberfield_twisted.testing.serving import Listening, serve

__all__ = ["HEADERS", "Listening", "Subscriber", "listen"]

#: The headers a delivery carries, as recorded.
HEADERS = ("Content-Type", "X-Signature", "X-Hook-Id", "X-Event", "X-Delivery")


class Subscriber:
    """A web-hook receiver: records each POST and fires waiters as they arrive."""

    app = Klein()

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str | None]]] = []
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def arrived(self, count: int) -> Deferred[None]:
        """Fire once ``count`` POSTs have arrived."""
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        self._wake()
        return d

    def _wake(self) -> None:
        for item in list(self._waiters):
            if len(self.received) >= item[0]:
                self._waiters.remove(item)
                item[1].callback(None)

    @app.route("/hook", methods=["POST"])
    def hook(self, request: Any) -> bytes:
        body = request.content.read()
        self.received.append((body, {name: request.getHeader(name) for name in HEADERS}))
        request.setResponseCode(204)
        request.notifyFinish().addBoth(lambda _: self._wake())
        return b""

    def events(self) -> list[tuple[int, str]]:
        """``(seq, event)`` of each delivery, in the order they came."""
        return [(json.loads(body)["seq"], json.loads(body)["event"])
                for body, _ in self.received]

    def all_signed(self, secret: str) -> bool:
        """Whether every delivery carries a valid signature for ``secret``."""
        return all(verify_signature(secret, body, headers["X-Signature"])
                   for body, headers in self.received)


async def listen(reactor: Any, subscriber: Subscriber, port: int | None = None) -> Listening:
    """Serve ``subscriber`` on ``127.0.0.1:port`` (none: a free port, as :func:`.serve` chooses)."""
    return await serve(reactor, Site(subscriber.app.resource()), port)
