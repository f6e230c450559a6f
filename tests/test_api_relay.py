"""The control API's relay end to end: a real site, real workers, real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from turberfield_twisted.http.api import ControlAPI
from turberfield_twisted.jobs.job import Worker
from turberfield_twisted.testing.procs import wait_gone

DEMO = "turberfield_twisted.demo.hello"
TOKEN = "relay-admin-token-abcdefghijklmnopqrstuvwxyz-0123"
AUTH = {b"Authorization": [b"Bearer " + TOKEN.encode()]}


class Client:
    """Real treq on a pool that keeps no connection open."""

    api: Any = None

    def __init__(self, reactor: Any, base: str):
        self.reactor = reactor
        self.base = base
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def call(self, method: str, path: str, data: Any = None,
                   headers: dict[bytes, list[bytes]] | None = None, timeout: float = 10,
                   ) -> tuple[int, bytes, bytes]:
        """``(status, content type, body)``."""
        response = await self.http.request(method, self.base + path, data=data,
                                           headers=AUTH if headers is None else headers,
                                           timeout=timeout, reactor=self.reactor)
        body = await response.content()
        ctype = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        return response.code, ctype, body


@pytest_twisted.async_yield_fixture
async def serve(initiator: Any, reactor: Any, take_ports: Any) -> Any:
    """
    ``serve(**kwargs)``: a ControlAPI on 127.0.0.1 (a port from free_ports) and a
    Client of it (its ``api`` too); ports and the relay's connections closed after.
    """
    ports: list[Any] = []
    apis: list[ControlAPI] = []

    async def start(**kwargs: Any) -> Client:
        api = ControlAPI(initiator, TOKEN, reactor, **kwargs)
        apis.append(api)
        port = await endpoints.TCP4ServerEndpoint(reactor, take_ports(1).low,
                                                  interface="127.0.0.1").listen(api.site())
        ports.append(port)
        client = Client(reactor, f"http://127.0.0.1:{port.getHost().port}")
        client.api = api
        return client

    yield start
    for port in ports:
        await port.stopListening()
    for api in apis:
        await api.close()


class Recorder(Protocol):
    """
    A stand-in worker: records each request; sends ``factory.answer`` if it
    has one, at once, or (with ``factory.hold`` = N) to N requests together
    once the N-th has come, so that N are in flight at once.
    """

    factory: Any

    def connectionMade(self) -> None:
        self.buffer = b""
        self.factory.connections += 1

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        if len(rest) < length:
            return
        self.factory.requests.append((head, rest[:length]))
        self.buffer = rest[length:]
        if self.factory.answer is None:
            return
        if not self.factory.hold:
            self.transport.write(self.factory.answer)
            return
        self.factory.held.append(self.transport)
        if len(self.factory.held) == self.factory.hold:
            for transport in self.factory.held:
                transport.write(self.factory.answer)
            self.factory.held.clear()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.lost += 1
        for d in self.factory.waiting:
            d.callback(None)
        self.factory.waiting.clear()


async def stand_in(reactor: Any, answer: bytes | None, port: int) -> tuple[Any, Any]:
    """A Recorder factory listening on 127.0.0.1:``port`` (one the test holds), and its port."""
    factory = Factory.forProtocol(Recorder)
    factory.requests, factory.answer, factory.lost, factory.waiting = [], answer, 0, []
    factory.connections, factory.hold, factory.held = 0, 0, []
    listening = await endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(
        factory)
    return factory, listening


def fake_job(initiator: Any, guid: str, port: int) -> Callable[[], None]:
    """A ready job record pointing at ``port``; returns its remover."""
    initiator.workers[guid] = Worker(guid=guid, port=port, session=None, module=DEMO,
                                     process=None, state="ready")
    return lambda: initiator.workers.pop(guid, None)


@implementer(IBodyProducer)
class Chunks:
    """A body of unknown length (sent chunked)."""

    length = UNKNOWN_LENGTH

    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    def startProducing(self, consumer: Any) -> Deferred[None]:
        for chunk in self.chunks:
            consumer.write(chunk)
        return succeed(None)

    def stopProducing(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


@pytest_twisted.ensureDeferred
async def test_relay_to_a_real_worker_and_back(serve, initiator, reactor):
    """A JSON POST with a query string comes back from the demo worker; its 400 comes back too."""
    client = await serve()
    status, _, body = await client.call("POST", "/jobs", json.dumps({"module": DEMO}).encode())
    assert status == 201
    guid = json.loads(body)["guid"]
    status, _, body = await client.call("GET", f"/jobs/{guid}?wait=ready&timeout=15",
                                        timeout=20)
    assert json.loads(body)["state"] == "ready"
    sent = {"greeting": ["hi", 1, None], "nested": {"k": "v"}}
    status, ctype, body = await client.call(
        "POST", f"/jobs/{guid}/proxy/echo?x=1&y=a%20b", json.dumps(sent).encode(),
        headers={**AUTH, b"Content-Type": [b"application/json"]})
    assert (status, ctype) == (200, b"application/json")
    assert json.loads(body) == {"guid": guid, "echo": sent}
    status, _, body = await client.call("GET", f"/jobs/{guid}/proxy/?q=1")
    assert status == 200
    hello = json.loads(body)
    assert hello["guid"] == guid and hello["config"]["greeting"] == "hello"
    assert initiator.job(guid).token.encode() not in body
    status, ctype, body = await client.call("POST", f"/jobs/{guid}/proxy/echo", b"not json {")
    assert (status, ctype) == (400, b"application/json")
    assert json.loads(body) == {"error": "the body is not JSON"}
    status, _, body = await client.call("GET", f"/jobs/{guid}/proxy/no/such/route")
    assert status == 404
    pid = initiator.job(guid).pid
    await initiator.stop(guid)
    await wait_gone(reactor, [pid])


@pytest_twisted.ensureDeferred
async def test_a_stopped_worker_is_502(serve, initiator, reactor):
    """After DELETE, once the job has exited, a relayed request is 502."""
    client = await serve()
    guid = await initiator.launch(DEMO)
    job = await initiator.ready(guid, timeout=15)
    pid = job.pid
    status, _, body = await client.call("DELETE", f"/jobs/{guid}")
    assert (status, json.loads(body)["state"]) == (202, "stopping")
    status, _, body = await client.call("GET", f"/jobs/{guid}?wait=exited&timeout=10",
                                        timeout=15)
    assert json.loads(body)["state"] == "exited"
    await wait_gone(reactor, [pid])
    status, ctype, body = await client.call("POST", f"/jobs/{guid}/proxy/echo", b"{}")
    assert (status, ctype) == (502, b"application/json")
    assert "exited" in json.loads(body)["error"]
    job.state = "ready"  # as if the record were stale: the port itself refuses
    try:
        status, _, body = await client.call("POST", f"/jobs/{guid}/proxy/echo", b"{}")
    finally:
        job.state = "exited"
    assert status == 502 and json.loads(body)["error"]


@pytest_twisted.ensureDeferred
async def test_the_worker_sees_the_request_less_hop_and_auth_headers(
        serve, initiator, reactor, take_ports):
    """On the wire: method, raw path and query, body, kept headers; no token, no hop headers."""
    answer = (b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
              b"Set-Cookie: sid=from-worker\r\n\r\nok")
    factory, port = await stand_in(reactor, answer, take_ports(1).low)
    remove = fake_job(initiator, "stand-in", port.getHost().port)
    try:
        client = await serve()
        headers = {**AUTH, b"Content-Type": [b"application/json"], b"X-Custom": [b"kept"],
                   b"Connection": [b"keep-alive, X-Drop"], b"X-Drop": [b"1"],
                   b"Proxy-Authorization": [b"Basic eA=="], b"Upgrade": [b"h2c"]}
        status, ctype, body = await client.call(
            "PUT", "/jobs/stand-in/proxy/items/a%20b/?x=1&y=%2F", b'{"n": 1}', headers=headers)
        assert (status, ctype, body) == (201, b"text/plain", b"ok")
        [(head, sent)] = factory.requests
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0] == "PUT /items/a%20b/?x=1&y=%2F HTTP/1.1"
        fields = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
                  for line in lines[1:]}
        assert sent == b'{"n": 1}'
        assert (fields["x-custom"], fields["content-type"]) == ("kept", "application/json")
        assert fields["host"] == f"127.0.0.1:{port.getHost().port}"
        for dropped in ("authorization", "x-drop", "proxy-authorization", "upgrade"):
            assert dropped not in fields, dropped
        assert TOKEN.encode() not in head
    finally:
        remove()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_workers_cookie_is_not_sent_on_for_another_client(
        serve, initiator, reactor, take_ports):
    """The relay keeps no cookies: what one worker sets never goes out with another request."""
    answer = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
              b"Set-Cookie: sid=from-worker\r\n\r\nok")
    factory, port = await stand_in(reactor, answer, take_ports(1).low)
    remove = fake_job(initiator, "stand-in", port.getHost().port)
    try:
        client = await serve()
        await client.call("GET", "/jobs/stand-in/proxy/a")
        await client.call("GET", "/jobs/stand-in/proxy/b")
        assert len(factory.requests) == 2
        assert b"from-worker" not in factory.requests[-1][0]
    finally:
        remove()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_worker_that_never_answers_is_504(serve, initiator, reactor, take_ports):
    """A worker that accepts and says nothing: 504 after relay_timeout, and the socket closed."""
    factory, port = await stand_in(reactor, None, take_ports(1).low)
    remove = fake_job(initiator, "silent", port.getHost().port)
    try:
        client = await serve(relay_timeout=0.3)
        closed: Deferred[None] = Deferred()
        factory.waiting.append(closed)
        started = reactor.seconds()
        status, ctype, body = await client.call("GET", "/jobs/silent/proxy/anything", timeout=5)
        assert (status, ctype) == (504, b"application/json")
        assert json.loads(body)["error"]
        assert 0.25 <= reactor.seconds() - started < 3
        await closed.addTimeout(5, reactor)
        assert len(factory.requests) == 1
    finally:
        remove()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_unknown_guid_no_token_and_big_bodies(serve, initiator, reactor):
    """Unknown job 404, no token 401, a body over max_body 413 (declared or chunked)."""
    client = await serve(max_body=1024 * 1024)
    status, ctype, body = await client.call("GET", "/jobs/no-such-job/proxy/x")
    assert (status, ctype) == (404, b"application/json") and json.loads(body)["error"]
    status, _, body = await client.call("GET", "/jobs/no-such-job/proxy/x", headers={})
    assert (status, json.loads(body)) == (401, {"error": "unauthorized"})
    big = b" " * (2 * 1024 * 1024)
    status, _, body = await client.call("POST", "/jobs", big)
    assert status == 413 and json.loads(body)["error"]
    chunked = Chunks([b" " * 65536] * 20)
    status, _, body = await client.call("POST", "/jobs", chunked)
    assert status == 413 and json.loads(body)["error"]
    status, _, body = await client.call("DELETE", "/jobs/no-such-job", big)
    assert status == 413 and json.loads(body)["error"]  # before any route runs
    status, _, body = await client.call("GET", "/health", headers={})
    assert (status, json.loads(body)["status"]) == (200, "ok")


@pytest_twisted.ensureDeferred
async def test_a_long_answer_and_a_long_body_stream_through_whole(
        serve, initiator, reactor, take_ports):
    """
    A 3 MiB answer (past what the relay holds) comes back whole and in order;
    a 2 MiB request body goes up whole.
    """
    body = bytes(range(256)) * (3 * 1024 * 4)
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    factory, port = await stand_in(reactor, answer, take_ports(1).low)
    remove = fake_job(initiator, "stand-in", port.getHost().port)
    try:
        client = await serve(max_body=4 * 1024 * 1024)
        upload = b"u" * (2 * 1024 * 1024)
        status, ctype, got = await client.call("POST", "/jobs/stand-in/proxy/blob", upload,
                                               timeout=20)
        assert (status, ctype) == (200, b"application/octet-stream")
        assert got == body
        [(_, sent)] = factory.requests
        assert sent == upload
    finally:
        remove()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_streamed_answer_past_the_bound_is_cut_off(
        serve, initiator, reactor, take_ports):
    """An answer of no stated length that passes max_response once streaming: the caller's
    connection is cut (it can't become a 502 any more); the relay goes on serving."""
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
              + b"x" * (300 * 1024))
    _, port = await stand_in(reactor, answer, take_ports(1).low)
    remove = fake_job(initiator, "stand-in", port.getHost().port)
    try:
        client = await serve()
        client.api.relay.max_response = 200 * 1024
        with pytest.raises(ResponseFailed):
            await client.call("GET", "/jobs/stand-in/proxy/big", timeout=10)
        client.api.relay.max_response = 10
        status, _, body = await client.call("GET", "/jobs/stand-in/proxy/big", timeout=10)
        assert status == 502 and json.loads(body)["error"] == "the worker's answer is too large"
    finally:
        remove()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_pool_grows_to_the_concurrency_seen(
        serve, initiator, reactor, take_ports):
    """Ten requests in flight to one worker at once: the relay keeps up to ten idle
    connections to it, so the next ten need no new connection."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    factory, port = await stand_in(reactor, answer, take_ports(1).low)
    remove = fake_job(initiator, "stand-in", port.getHost().port)
    try:
        client = await serve()
        assert client.api.relay.pool.per_host == 4
        factory.hold = 10  # all ten are in flight before any is answered
        for _ in range(2):
            results = await gatherResults([
                Deferred.fromCoroutine(client.call("GET", f"/jobs/stand-in/proxy/{n}"))
                for n in range(10)])
            assert [status for status, _, _ in results] == [200] * 10
        assert client.api.relay.peak == 10
        assert client.api.relay.pool.per_host == 10
        assert factory.connections <= 12  # the second round reused the first's
    finally:
        remove()
        await port.stopListening()
