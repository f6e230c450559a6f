"""
The control API's front, over real loopback connections: relayed requests are read
and answered as bytes (no ``Server`` header: Twisted's server adds one) until another
request comes, which hands the connection to Twisted's channel for good; what the
front does not take goes to the channel whole; the relay's pool keeps, reuses and
recovers its connections to a worker; a second mount relays under its own prefix.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest_twisted
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol

from turberfield_twisted.http.api import ControlAPI
from turberfield_twisted.http.upstream import Upstream
from turberfield_twisted.jobs.job import Worker
from turberfield_twisted.worker.wire import ResponseReader

DEMO = "turberfield_twisted.demo.hello"
TOKEN = "front-admin-token-abcdefghijklmnopqrstuvwxyz-012345"
AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


class StandIn(Protocol):
    """A stand-in worker: answers each request with its request line as the body."""

    factory: Any

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            line = head.split(b"\r\n")[0]
            self.factory.lines.append(line)
            extra = self.factory.extra
            answer = self.factory.answer(line, rest[:length])
            self.transport.write(answer + extra)


async def stand_in(reactor: Any, answer: Any = None) -> Any:
    """A stand-in worker on 127.0.0.1:0: its factory (lines seen, connections), and port."""
    factory = Factory.forProtocol(StandIn)
    factory.lines, factory.connections, factory.extra = [], [], b""

    def echo(line: bytes, body: bytes) -> bytes:
        payload = line + b"|" + body
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                % len(payload) + payload)

    factory.answer = answer or echo
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    factory.port = port
    return factory


class Raw(Protocol):
    """A raw HTTP client: sends bytes, reads answers (``heads``, ``bodies``)."""

    def __init__(self) -> None:
        self.reader = ResponseReader(self)
        self.heads: list[tuple[int, dict[bytes, bytes]]] = []
        self.bodies: list[bytes] = []
        self._body: list[bytes] = []
        self.waiting: list[tuple[int, Deferred[None]]] = []
        self.closed: Deferred[None] = Deferred()

    def ask(self, data: bytes, answers: int = 1, head_only: bool = False) -> Deferred[None]:
        for _ in range(answers):
            self.reader.expect(head_only)
        want: Deferred[None] = Deferred()
        self.waiting.append((len(self.bodies) + answers, want))
        self.transport.write(data)
        return want

    def dataReceived(self, data: bytes) -> None:
        self.reader.feed(data)

    def head(self, status: int, headers: Any, length: int | None) -> None:
        self.heads.append((status, {name.lower(): value for name, value in headers}))

    def body(self, data: bytes) -> None:
        self._body.append(data)

    def end(self, reusable: bool) -> None:
        self.bodies.append(b"".join(self._body))
        self._body = []
        for count, want in list(self.waiting):
            if len(self.bodies) >= count:
                self.waiting.remove((count, want))
                want.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


@pytest_twisted.async_yield_fixture
async def api(initiator: Any, reactor: Any) -> Any:
    """``start(**kwargs)``: a ControlAPI on 127.0.0.1:0; ``connect()``: a Raw client of it."""
    opened: list[Any] = []

    async def start(**kwargs: Any) -> Any:
        served = ControlAPI(initiator, TOKEN, reactor, **kwargs)
        port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            served.site())
        opened.append((served, port))

        async def connect() -> Raw:
            raw = Raw()
            factory = ClientFactory.forProtocol(lambda: raw)  # type: ignore[arg-type]
            done: Deferred[Any] = endpoints.TCP4ClientEndpoint(
                reactor, "127.0.0.1", port.getHost().port).connect(factory)
            await done
            opened.append(raw)
            return raw

        served.connect = connect
        return served

    yield start
    for thing in opened:
        if isinstance(thing, Raw):
            if thing.transport is not None:
                thing.transport.loseConnection()
            continue
        served, port = thing
        await port.stopListening()
        await served.close()


def fake_job(initiator: Any, guid: str, port: int) -> None:
    initiator.workers[guid] = Worker(guid=guid, port=port, session=None, module=DEMO,
                                     process=None, state="ready")


def get(path: str, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + AUTH + extra + b"\r\n"


@pytest_twisted.ensureDeferred
async def test_relayed_requests_stay_with_the_front_until_another_comes(api, initiator,
                                                                        reactor):
    """
    Three relayed requests sent at once are answered in order, as bytes (no Server
    header); GET /health hands the connection to Twisted's server, which answers it
    and the relayed request after it (with its Server header).
    """
    worker = await stand_in(reactor)
    fake_job(initiator, "w1", worker.port.getHost().port)
    try:
        served = await api()
        raw = await served.connect()
        await raw.ask(b"".join(get(f"/jobs/w1/proxy/n{n}?q={n}") for n in range(3)), 3)
        assert [status for status, _ in raw.heads] == [200, 200, 200]
        assert raw.bodies == [b"GET /n%d?q=%d HTTP/1.1|" % (n, n) for n in range(3)]
        assert not any(b"server" in headers for _, headers in raw.heads)
        await raw.ask(get("/health"))
        await raw.ask(get("/jobs/w1/proxy/after"))
        assert raw.heads[3][0] == raw.heads[4][0] == 200
        assert b"server" in raw.heads[3][1] and b"server" in raw.heads[4][1]
        assert raw.bodies[4] == b"GET /after HTTP/1.1|"
        assert len(worker.connections) == 1  # one kept connection carried all four
    finally:
        initiator.workers.pop("w1", None)
        await worker.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_what_the_front_does_not_take_goes_to_the_channel_whole(api, initiator,
                                                                      reactor):
    """
    A chunked body, a body over max_body and a HEAD: the first two are handed over
    (relayed by the channel; 413 from its table), HEAD is answered by its head alone.
    """
    worker = await stand_in(reactor)
    fake_job(initiator, "w1", worker.port.getHost().port)
    try:
        served = await api(max_body=1000)
        head = await served.connect()
        await head.ask(b"HEAD /jobs/w1/proxy/h HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n",
                       head_only=True)
        assert head.heads[0][0] == 200 and head.bodies == [b""]
        assert worker.lines[-1] == b"HEAD /h HTTP/1.1"
        chunked = await served.connect()
        await chunked.ask(b"POST /jobs/w1/proxy/c HTTP/1.1\r\nHost: x\r\n" + AUTH
                          + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        assert chunked.bodies == [b"POST /c HTTP/1.1|abc"]
        assert b"server" in chunked.heads[0][1]
        big = await served.connect()
        await big.ask(b"POST /jobs/w1/proxy/b HTTP/1.1\r\nHost: x\r\n" + AUTH
                      + b"Content-Length: 1001\r\n\r\n" + b"x" * 1001)
        assert big.heads[0][0] == 413 and "too large" in json.loads(big.bodies[0])["error"]
    finally:
        initiator.workers.pop("w1", None)
        await worker.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_relayed_request_that_does_not_arrive_whole_in_time_is_408(api, initiator,
                                                                           reactor):
    """Half a body, then nothing: 408 as JSON after read_timeout, and the connection closed."""
    worker = await stand_in(reactor)
    fake_job(initiator, "w1", worker.port.getHost().port)
    try:
        served = await api(read_timeout=0.3)
        raw = await served.connect()
        await raw.ask(b"POST /jobs/w1/proxy/s HTTP/1.1\r\nHost: x\r\n" + AUTH
                      + b"Content-Length: 10\r\n\r\n12345")
        assert raw.heads[0][0] == 408
        assert "did not arrive whole within 0.3s" in json.loads(raw.bodies[0])["error"]
        await raw.closed.addTimeout(10, reactor)
        assert worker.lines == []
    finally:
        initiator.workers.pop("w1", None)
        await worker.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_errors_are_answered_from_the_table_and_close_is_honoured(api, initiator,
                                                                        reactor):
    """No token 401, no job 404, a dot segment 400, as JSON on a kept connection; a
    request saying Connection: close is answered, then the connection closed."""
    worker = await stand_in(reactor)
    fake_job(initiator, "w1", worker.port.getHost().port)
    try:
        served = await api()
        raw = await served.connect()
        await raw.ask(b"GET /jobs/w1/proxy/x HTTP/1.1\r\nHost: x\r\n\r\n"
                      + get("/jobs/nope/proxy/x") + get("/jobs/w1/proxy/a/%2e%2e/b"), 3)
        assert [status for status, _ in raw.heads] == [401, 404, 400]
        assert raw.heads[0][1][b"www-authenticate"] == b"Bearer"
        assert all(json.loads(body)["error"] for body in raw.bodies)
        await raw.ask(get("/jobs/w1/proxy/last", b"Connection: close\r\n"))
        await raw.closed.addTimeout(10, reactor)
        assert raw.bodies[-1] == b"GET /last HTTP/1.1|" and worker.lines == [b"GET /last HTTP/1.1"]
    finally:
        initiator.workers.pop("w1", None)
        await worker.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_pool_recovers_a_connection_the_worker_closed(api, initiator, reactor):
    """
    The worker closes the kept connection while it is idle: the next GET goes on a
    new one and is answered (sent once more if it met the closed one first).
    """
    worker = await stand_in(reactor)
    fake_job(initiator, "w1", worker.port.getHost().port)
    try:
        served = await api()
        raw = await served.connect()
        await raw.ask(get("/jobs/w1/proxy/one"))
        lost: Deferred[None] = Deferred()
        closing = worker.connections[0]
        closing.connectionLost = lambda reason=None: lost.callback(None)
        closing.transport.loseConnection()
        await lost.addTimeout(10, reactor)
        await raw.ask(get("/jobs/w1/proxy/two"))
        assert raw.heads[1][0] == 200 and raw.bodies[1] == b"GET /two HTTP/1.1|"
        assert len(worker.connections) == 2
    finally:
        initiator.workers.pop("w1", None)
        await worker.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_bytes_a_worker_sends_past_its_answer_reach_no_one(api, initiator, reactor):
    """A worker that writes more than its answer: its connection is dropped, not kept."""
    worker = await stand_in(reactor)
    worker.extra = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsneaky"
    fake_job(initiator, "w1", worker.port.getHost().port)
    try:
        served = await api()
        raw = await served.connect()
        await raw.ask(get("/jobs/w1/proxy/one"))
        await raw.ask(get("/jobs/w1/proxy/two"))
        assert raw.bodies == [b"GET /one HTTP/1.1|", b"GET /two HTTP/1.1|"]
        assert len(worker.connections) == 2
    finally:
        initiator.workers.pop("w1", None)
        await worker.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_another_mount_relays_under_its_own_prefix(api, reactor):
    """A mount of its own (as a service's): its name chooses the worker, and a Location
    on the worker's origin comes back under that mount's prefix."""

    def moved(line: bytes, body: bytes) -> bytes:
        return b"HTTP/1.1 302 Found\r\nLocation: /there?x=1\r\nContent-Length: 0\r\n\r\n"

    worker = await stand_in(reactor, moved)
    served = await api()
    chosen: list[str] = []

    def choose(name: str, request: Any) -> Upstream:
        chosen.append(name)
        return Upstream("127.0.0.1", worker.port.getHost().port, "",
                        f"/pools/{name}/proxy".encode(), f"pool-{name}")

    served.mount(re.compile(rb"/pools/([a-z]+)/proxy(?:/|\Z)"), choose)
    try:
        raw = await served.connect()  # the site was made before the mount: mounts are shared
        await raw.ask(get("/pools/blue/proxy/here"))
        assert chosen == ["blue"] and raw.heads[0][0] == 302
        assert raw.heads[0][1][b"location"] == b"/pools/blue/proxy/there?x=1"
        assert worker.lines == [b"GET /here HTTP/1.1"]
    finally:
        await worker.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_access_is_checked_on_the_front_as_on_the_channel(api, initiator, reactor):
    """
    Read by the front, a relayed request meets the same gate: a viewer's token 403
    naming the role, an operator scoped to another module 403, one scoped to its
    module relayed; eleven wrong tokens, then 429 for that address; the audit
    trail keeps the refusals and the relayed POST.
    """
    from turberfield_twisted.access.audit import AuditTrail
    from turberfield_twisted.access.records import MemoryRecords

    worker = await stand_in(reactor)
    fake_job(initiator, "w1", worker.port.getHost().port)
    audit = AuditTrail(MemoryRecords(), reactor)
    try:
        served = await api(audit=audit)
        _, viewer = served.gate.book.create("v", "viewer")
        _, other = served.gate.book.create("o", "operator", ["some.other.module"])
        _, mine = served.gate.book.create("m", "operator", [DEMO])

        def as_(token: str, method: bytes = b"GET") -> bytes:
            return (method + b" /jobs/w1/proxy/x HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: Bearer " + token.encode() + b"\r\n"
                    b"Content-Length: 0\r\n\r\n")

        raw = await served.connect()
        await raw.ask(as_(viewer) + as_(other) + as_(mine, b"POST"), 3)
        assert [status for status, _ in raw.heads] == [403, 403, 200]
        assert "operator" in json.loads(raw.bodies[0])["error"]
        assert not any(b"server" in headers for _, headers in raw.heads)  # the front's
        await raw.ask(b"".join(as_("wrong") for _ in range(11)), 11)
        assert [status for status, _ in raw.heads[3:]] == [401] * 10 + [429]
        kept, _ = audit.last()
        assert [(record.status, record.method) for record in kept][:3] == [
            (403, "GET"), (403, "GET"), (200, "POST")]
    finally:
        initiator.workers.pop("w1", None)
        await worker.port.stopListening()
