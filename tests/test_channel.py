"""
The control API's channel bounds how a request arrives: a real daemon, spoken to over a
raw socket, answers an over-long request line 414, over-long headers 431 and a request
that does not arrive whole in time 408, each with a JSON error, and serves on.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest_twisted
from treq.client import HTTPClient
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock, LoopingCall
from twisted.internet.testing import StringTransport
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource

from turberfield_twisted.http.site import ApiSite
from turberfield_twisted.testing.ports import free_ports

#: Past any of the bounds by far.
LONG = 100 * 1024


class Raw(Protocol):
    """Send ``first``; then ``more`` every ``every`` seconds (at most ``count`` times) while
    connected; ``answer`` fires with all it received once the daemon closes."""

    def __init__(self, reactor: Any, first: bytes, more: bytes = b"", every: float = 0.2,
                 count: int = 150):
        self.reactor = reactor
        self.first, self.more, self.every, self.count = first, more, every, count
        self.received = b""
        self.answer: Deferred[bytes] = Deferred()
        self.sent = 0
        self._loop: LoopingCall | None = None

    def connectionMade(self) -> None:
        self.transport.write(self.first)
        if self.more:
            self._loop = LoopingCall(self._again)
            self._loop.clock = self.reactor
            self._loop.start(self.every, now=False)

    def _again(self) -> None:
        if self.sent >= self.count:
            self._stop()
            return
        self.sent += 1
        self.transport.write(self.more)

    def _stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self._stop()
        self.answer.callback(self.received)


async def exchange(reactor: Any, url: str, raw: Raw) -> tuple[int, dict[str, Any]]:
    """Connect ``raw`` to the API at ``url``; its answer's status and JSON body."""
    where = urlsplit(url)
    factory = ClientFactory.forProtocol(lambda: raw)  # type: ignore[arg-type]
    reactor.connectTCP(where.hostname, where.port, factory)
    answer = await raw.answer.addTimeout(30, reactor)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), answer[:200]
    assert b"content-type: application/json" in head.lower()
    return int(head.split()[1]), json.loads(body)


@pytest_twisted.ensureDeferred
async def test_requests_too_long_or_too_slow_get_a_json_answer(daemons, reactor):
    """
    A 100 KiB request line is 414, a 100 KiB header line or 20 KiB of headers 431, and a
    chunked upload that never ends 408 (read_timeout 1 s); the daemon answers on after.
    """
    with free_ports() as ports:
        daemon = await daemons(ports.low, ports.high, "read_timeout = 1\n")
        auth = f"Authorization: Bearer {daemon.token}\r\n".encode()
        line = b"GET /" + b"a" * LONG + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        status, body = await exchange(reactor, daemon.url, Raw(reactor, line))
        assert status == 414 and "request line" in body["error"]
        header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"b" * LONG + b"\r\n\r\n"
        status, body = await exchange(reactor, daemon.url, Raw(reactor, header))
        assert status == 431 and "header line" in body["error"]
        many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-Pad-%d: %s\r\n" % (n, b"c" * 1000) for n in range(20)) + b"\r\n"
        status, body = await exchange(reactor, daemon.url, Raw(reactor, many))
        assert status == 431 and "headers" in body["error"]
        upload = (b"POST /jobs HTTP/1.1\r\nHost: x\r\n" + auth
                  + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"1\r\n{\r\n")
        slow = Raw(reactor, upload, more=b"1\r\n \r\n")
        status, body = await exchange(reactor, daemon.url, slow)
        assert status == 408 and "did not arrive whole within 1s" in body["error"]
        assert slow.sent < slow.count  # the daemon ended it, not the test's bound
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        response = await http.get(daemon.url + "/health", timeout=30, reactor=reactor)
        assert response.code == 200
        await response.content()


class _Ok(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b"ok"


def _channel(clock: Clock, read_timeout: float | None) -> tuple[Any, StringTransport]:
    site = ApiSite(_Ok(), reactor=clock)
    site.read_timeout = read_timeout
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def test_a_body_not_whole_by_the_deadline_is_408():
    """A request whose body has not all come read_timeout seconds after its line: 408, closed."""
    clock = Clock()
    channel, transport = _channel(clock, 5)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
    clock.advance(4.9)
    assert transport.value() == b""
    channel.dataReceived(b"678")  # still arriving: the bound is on the whole, not on idleness
    clock.advance(0.1)
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert transport.disconnecting


def test_a_request_whole_in_time_is_answered_and_the_clock_starts_again_with_the_next():
    """A request whole before the deadline is answered; the next one has its own deadline."""
    clock = Clock()
    channel, transport = _channel(clock, 5)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
    clock.advance(10)
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    transport.clear()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n")
    clock.advance(5)
    assert transport.value().startswith(b"HTTP/1.1 408 ")


def test_without_a_read_timeout_there_is_no_deadline():
    """read_timeout None: a slow body is not refused (only Twisted's idle timeout applies)."""
    clock = Clock()
    channel, transport = _channel(clock, None)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
    for _ in range(10):
        clock.advance(30)
        channel.dataReceived(b"")
    assert transport.value() == b""
