"""
The relay at its edges, through a real ControlAPI on a real port and real workers:
a worker's Location that leaves its origin, and a caller that hangs up mid-answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from treq.client import HTTPClient
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import LogLevel, globalLogPublisher
from twisted.web.client import Agent, HTTPConnectionPool

from turberfield_twisted.daemon.metrics import Metrics
from turberfield_twisted.http.api import ControlAPI
from turberfield_twisted.testing.procs import wait_gone

REDIRECT = "turberfield_twisted.testing.redirect"
STREAM = "turberfield_twisted.testing.stream"
TOKEN = "edges-admin-token-abcdefghijklmnopqrstuvwxyz-0123456"
AUTH = {b"Authorization": [f"Bearer {TOKEN}".encode()]}


class Logged:
    """Every log event while a test runs; :meth:`wait` for one that ``wanted`` accepts."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._waiting: list[tuple[Callable[[dict[str, Any]], bool], Deferred[dict[str, Any]]]]
        self._waiting = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for item in list(self._waiting):
            if item[0](event):
                self._waiting.remove(item)
                item[1].callback(event)

    def wait(self, wanted: Callable[[dict[str, Any]], bool]) -> Deferred[dict[str, Any]]:
        for event in self.events:
            if wanted(event):
                return succeed(event)
        d: Deferred[dict[str, Any]] = Deferred()
        self._waiting.append((wanted, d))
        return d

    def failures(self) -> list[dict[str, Any]]:
        """Events at level critical, or carrying a traceback."""
        return [event for event in self.events
                if event.get("log_level") is LogLevel.critical or "log_failure" in event]


@pytest_twisted.async_yield_fixture
async def logged() -> Any:
    observer = Logged()
    globalLogPublisher.addObserver(observer)
    yield observer
    globalLogPublisher.removeObserver(observer)


@pytest_twisted.async_yield_fixture
async def api(reactor: Any, start_initiator: Any, take_ports: Any) -> Any:
    """``(init, base URL, metrics)``: a ControlAPI with metrics over a real initiator."""
    running = await start_initiator({REDIRECT: {}, STREAM: {}}, reactor=reactor)
    metrics = Metrics(running.init)
    served = ControlAPI(running.init, TOKEN, reactor, metrics=metrics)
    port = await endpoints.TCP4ServerEndpoint(reactor, take_ports(1).low,
                                              interface="127.0.0.1").listen(served.site())
    yield running.init, f"http://127.0.0.1:{port.getHost().port}", port.getHost().port
    await port.stopListening()
    await served.close()
    metrics.close()


async def ready(init: Any, module: str) -> tuple[str, int, int]:
    """A ready job of ``module``: its guid, port and pid."""
    guid = await init.launch(module)
    job = await init.ready(guid, timeout=30)
    return guid, job.port, job.pid


def client(reactor: Any) -> HTTPClient:
    """treq on a pool that keeps nothing, and follows no redirect."""
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


@pytest_twisted.ensureDeferred
async def test_a_location_off_the_workers_origin_is_not_relayed(api, logged, reactor):
    """
    A worker's Location to another host, port or scheme is answered 502 (JSON, logged
    with the guid); one on its own origin comes back as a path under its job's proxy.
    """
    init, base, _ = api
    guid, port, pid = await ready(init, REDIRECT)
    http = client(reactor)
    under = f"/jobs/{guid}/proxy"
    table = [
        ("http://other.example/x", None),
        ("//other.example/x", None),
        ("https:other.example", None),
        (f"https://127.0.0.1:{port}/x", None),  # another scheme
        (f"http://127.0.0.1:{port + 1}/x", None),  # another port
        ("/%2e%2e/%2e%2e/health", None),  # an escaped way out of the proxy
        ("/x?y=1", f"{under}/x?y=1"),
        (f"http://127.0.0.1:{port}/a/b?c=1#d", f"{under}/a/b?c=1#d"),
        (f"HTTP://127.0.0.1:{port}", f"{under}/"),
        ("next", f"{under}/dir/next"),
        ("../../../../up", f"{under}/up"),
    ]
    for given, wanted in table:
        response = await http.get(f"{base}{under}/dir/here?to={quote(given, safe='')}",
                                  headers=AUTH, timeout=30, reactor=reactor,
                                  allow_redirects=False)
        body = await response.content()
        if wanted is None:
            assert response.code == 502, (given, body)
            assert response.headers.getRawHeaders(b"location") is None
            assert "off its own origin" in json.loads(body)["error"], given
        else:
            assert response.code == 302, (given, body)
            assert response.headers.getRawHeaders(b"location") == [wanted.encode()], given
    warned = [event for event in logged.events
              if event.get("guid") == guid and "redirects off its origin" in
              event.get("log_format", "")]
    assert [event["location"] for event in warned] == [g for g, w in table if w is None]
    await init.stop(guid)
    await wait_gone(reactor, [pid])


class _HangUp(Protocol):
    """Ask for ``request``; close the connection as soon as part of the answer has come."""

    def __init__(self, request: bytes):
        self.request = request
        self.got = 0
        self.closed: Deferred[int] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.got += len(data)
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(self.got)


@pytest_twisted.ensureDeferred
async def test_a_caller_that_hangs_up_mid_answer_is_counted_closed(api, logged, reactor):
    """
    A caller closes while a worker streams 8 MiB to it: no traceback, no critical
    event; the request is counted under the relay metric's class "closed".
    """
    init, base, api_port = api
    guid, _, pid = await ready(init, STREAM)
    asked = (f"GET /jobs/{guid}/proxy/?kib=8192 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"Authorization: Bearer {TOKEN}\r\n\r\n").encode()
    went_away = logged.wait(lambda event: event.get("guid") == guid
                            and "went away" in event.get("log_format", ""))
    hang_up = _HangUp(asked)
    factory = ClientFactory.forProtocol(lambda: hang_up)  # type: ignore[arg-type]
    reactor.connectTCP("127.0.0.1", api_port, factory)
    got = await hang_up.closed.addTimeout(30, reactor)
    assert 0 < got < 8 * 1024 * 1024
    await went_away.addTimeout(30, reactor)
    response = await client(reactor).get(f"{base}/metrics", headers=AUTH, timeout=30,
                                         reactor=reactor)
    text = (await response.content()).decode()
    counts = {sample.labels["code"]: sample.value
              for family in text_string_to_metric_families(text)
              if family.name == "proactor_relay_requests" for sample in family.samples
              if sample.name == "proactor_relay_requests_total"}
    assert counts["closed"] == 1
    assert logged.failures() == []
    await init.stop(guid)
    await wait_gone(reactor, [pid])
