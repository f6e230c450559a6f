"""Web-hooks: validation, signing, ordered delivery, retry policy, and real HTTP end to end."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from typing import Any

import attrs
import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent, globalLogPublisher
from twisted.web.server import Site

from turberfield_twisted.errors import DaemonStopping
from turberfield_twisted.hooks.dispatcher import HookDispatcher, HookRejected, UnknownHook
from turberfield_twisted.hooks.rules import HookNotAllowed, verify_signature
from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState
from turberfield_twisted.testing.subscriber import Subscriber

URL = "http://127.0.0.1:9999/hook"

# -- fakes -------------------------------------------------------------------


@attrs.define
class Call:
    """One recorded ``post``: its arguments and the Deferred the test fires."""

    url: str
    data: bytes
    headers: dict[str, str]
    kwargs: dict[str, Any]
    deferred: Deferred[Any]

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.data)


@attrs.frozen
class FakeResponse:
    """Just enough of a treq response."""

    code: int
    body: Deferred[bytes] | None = None

    def content(self) -> Deferred[bytes]:
        return self.body if self.body is not None else succeed(b"")


class FakeHTTP:
    """A treq-like client whose ``post`` records the call and waits for the test."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def post(self, url: str, data: bytes, headers: dict[str, str], **kwargs: Any) -> Any:
        d: Deferred[Any] = Deferred()
        self.calls.append(Call(url, data, headers, kwargs, d))
        return d

    def answer(self, code: int, index: int = -1) -> None:
        self.calls[index].deferred.callback(FakeResponse(code))

    def refuse(self, index: int = -1) -> None:
        self.calls[index].deferred.errback(ConnectionRefusedError("refused"))


class ImmediateHTTP:
    """A client whose every ``post`` has already succeeded."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def post(self, url: str, data: bytes, **kwargs: Any) -> Deferred[Any]:
        self.seqs.append(json.loads(data)["seq"])
        return succeed(FakeResponse(204))


def record(event: str = "ready", kind: str = "state", guid: str = "g1",
           data: Any = None) -> JobEvent:
    state = JobState(event) if event in set(JobState) else JobState.READY
    return JobEvent(kind=EventKind(kind), name=event, guid=guid, module="demo", time=1.5,
                    state=state, data=data)


def make(**kwargs: Any) -> tuple[HookDispatcher, FakeHTTP, Clock]:
    clock = Clock()
    http = FakeHTTP()
    return HookDispatcher(clock, http, **kwargs), http, clock


# -- delivery ------------------------------------------------------------------


def test_in_order_one_in_flight() -> None:
    """A hook sends its records in order, each only after the one before is answered."""
    hooks, http, _ = make()
    hooks.add(URL, ["*"])
    for name in ("starting", "ready", "stopping"):
        hooks.publish(record(name))
    assert len(http.calls) == 1
    assert hooks.list()[0]["queued"] == 3
    http.answer(200)
    assert len(http.calls) == 2
    http.answer(204)
    http.answer(202)
    assert [c.body["event"] for c in http.calls] == ["starting", "ready", "stopping"]
    assert [c.body["seq"] for c in http.calls] == [1, 2, 3]
    assert [c.headers["X-Delivery"] for c in http.calls] == ["1", "2", "3"]
    (row,) = hooks.list()
    assert (row["queued"], row["delivered"], row["dropped"]) == (0, 3, 0)


def test_signature_headers_and_request_arguments() -> None:
    """The POST carries the record as JSON, an HMAC-SHA256 of its exact bytes and the ids."""
    hooks, http, clock = make(timeout=2.5)
    hook = hooks.add(URL, ["ready"])
    hooks.publish(record("ready"))
    (call,) = http.calls
    assert call.url == URL
    assert call.body == {**record("ready").as_json(), "seq": 1}
    expected = hmac.new(hook["secret"].encode(), call.data, hashlib.sha256).hexdigest()
    assert call.headers["X-Signature"] == f"sha256={expected}"
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["X-Hook-Id"] == hook["id"]
    assert call.headers["X-Event"] == "ready"
    assert call.kwargs == {"timeout": 2.5, "reactor": clock, "allow_redirects": False}
    assert verify_signature(hook["secret"], call.data, call.headers["X-Signature"])
    assert verify_signature(hook["secret"], call.data, call.headers["X-Signature"].encode())
    assert not verify_signature(hook["secret"], call.data + b" ", call.headers["X-Signature"])
    assert not verify_signature("another secret", call.data, call.headers["X-Signature"])
    for bad in ("", "sha256=", "md5=00", "sha256=\u00e9\u00e9", None):
        assert not verify_signature(hook["secret"], call.data, bad)


def test_retry_backoff_and_jitter() -> None:
    """Errors, timeouts, 408, 429 and 5xx retry the same record after a growing, capped delay."""
    hooks, http, clock = make(backoff_initial=1.0, backoff_factor=2.0, backoff_cap=5.0,
                              random=lambda: 0.5)
    hooks.add(URL, ["*"])
    hooks.publish(record("starting"))
    hooks.publish(record("ready"))
    failures = [
        lambda: http.refuse(),
        lambda: http.answer(503),
        lambda: http.calls[-1].deferred.errback(CancelledError()),
        lambda: http.answer(408),
        lambda: http.answer(429),
    ]
    delays = [0.9, 1.8, 3.6, 4.5, 4.5]  # d * (1 - 0.2 * 0.5), d capped at 5
    for n, (failure, delay) in enumerate(zip(failures, delays, strict=True), start=1):
        failure()
        assert hooks.list()[0]["failed_attempts"] == n
        (call,) = clock.getDelayedCalls()
        assert call.getTime() - clock.seconds() == pytest.approx(delay)
        clock.advance(delay - 0.001)
        assert len(http.calls) == n
        clock.advance(0.002)  # float slack
        assert len(http.calls) == n + 1
    assert {c.data for c in http.calls} == {http.calls[0].data}
    http.answer(200)
    assert http.calls[-1].body["seq"] == 2
    http.refuse()  # a new record starts its backoff over
    (call,) = clock.getDelayedCalls()
    assert call.getTime() - clock.seconds() == pytest.approx(0.9)


def test_backoff_jitter_bounds() -> None:
    """Each delay lies in [d * 0.8, d] for d = min(cap, initial * factor ** n)."""
    draws = iter([0.0, 0.999999, 0.0, 0.999999, 0.0])
    hooks, _, _ = make(backoff_initial=0.5, backoff_factor=3.0, backoff_cap=10.0,
                       random=lambda: next(draws))
    assert hooks.backoff(0) == pytest.approx(0.5)
    assert hooks.backoff(0) == pytest.approx(0.4, abs=1e-5)
    assert hooks.backoff(2) == pytest.approx(4.5)
    assert hooks.backoff(5) == pytest.approx(8.0, abs=1e-4)
    assert hooks.backoff(10_000) == pytest.approx(10.0)


def test_client_errors_drop_the_record() -> None:
    """A 4xx other than 408 and 429 (or a redirect) drops that record and goes on."""
    hooks, http, clock = make()
    hooks.add(URL, ["*"])
    for name in ("a", "b", "c", "d"):
        hooks.publish(record(name))
    with capturedLogs() as events:
        http.answer(404)
        http.answer(400)
        http.answer(302)
    http.answer(200)
    assert [c.body["event"] for c in http.calls] == ["a", "b", "c", "d"]
    (row,) = hooks.list()
    assert (row["delivered"], row["dropped"], row["failed_attempts"]) == (1, 3, 0)
    assert clock.getDelayedCalls() == []
    assert [e.get("code") for e in events if "code" in e] == [404, 400, 302]


def test_queue_bound_drops_the_oldest() -> None:
    """On overflow the oldest waiting record is dropped and counted; the one in flight stays."""
    hooks, http, _ = make(max_queue=2)
    hooks.add(URL, ["*"])
    for name in ("one", "two", "three", "four", "five"):
        hooks.publish(record(name))
    row = hooks.list()[0]
    assert (row["queued"], row["dropped"]) == (3, 2)
    for _ in range(3):
        http.answer(200)
    assert [c.body["event"] for c in http.calls] == ["one", "four", "five"]
    assert [c.body["seq"] for c in http.calls] == [1, 4, 5]
    row = hooks.list()[0]
    assert (row["queued"], row["delivered"], row["dropped"]) == (0, 3, 2)


def test_slow_body_is_bounded_by_timeout() -> None:
    """A response whose body never ends is given up after ``timeout``; its status counts."""
    hooks, http, clock = make(timeout=3.0)
    hooks.add(URL, ["*"])
    hooks.publish(record())
    http.calls[0].deferred.callback(FakeResponse(200, Deferred()))
    assert hooks.list()[0]["delivered"] == 0
    clock.advance(3.0)
    assert hooks.list()[0]["delivered"] == 1
    assert clock.getDelayedCalls() == []


def test_synchronous_answers_do_not_recurse() -> None:
    """A client that answers at once delivers a long queue without deep recursion."""
    clock = Clock()
    http = ImmediateHTTP()
    hooks = HookDispatcher(clock, http, max_queue=5000)
    hooks.add(URL, ["*"])
    for _ in range(3000):
        hooks.publish(record())
    assert http.seqs == list(range(1, 3001))
    assert hooks.list()[0]["delivered"] == 3000


def test_publish_never_raises() -> None:
    """A client that raises, or a record that is not JSON, never reaches the publisher."""

    class Broken:
        def post(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

    clock = Clock()
    hooks = HookDispatcher(clock, Broken())
    hooks.add(URL, ["*"])
    hooks.publish(record("odd", kind="worker", data={"set": {1, 2}, "when": object()}))
    assert hooks.list()[0]["failed_attempts"] == 1
    assert len(clock.getDelayedCalls()) == 1
    hooks.close()
    assert clock.getDelayedCalls() == []


# -- remove and close ----------------------------------------------------------


def test_remove_cancels_retry_and_queue() -> None:
    """remove() cancels the pending retry, drops the queue and sends nothing more."""
    hooks, http, clock = make()
    keep = hooks.add("http://127.0.0.1:1/keep", ["*"])
    gone = hooks.add(URL, ["*"])
    hooks.publish(record("a"))
    hooks.publish(record("b"))
    http.answer(200, index=0)  # keep's "a"
    http.refuse(index=1)  # gone's "a": a retry is pending
    assert len(clock.getDelayedCalls()) == 1
    hooks.remove(gone["id"])
    assert clock.getDelayedCalls() == []
    clock.advance(60)
    assert [c.url for c in http.calls].count(URL) == 1
    assert [row["id"] for row in hooks.list()] == [keep["id"]]
    with pytest.raises(UnknownHook):
        hooks.remove(gone["id"])
    with pytest.raises(KeyError):
        hooks.remove("nope")


def test_remove_cancels_request_in_flight() -> None:
    """remove() cancels the request in flight and nothing is retried."""
    hooks, http, clock = make()
    hook = hooks.add(URL, ["*"])
    hooks.publish(record())
    hooks.remove(hook["id"])
    failure = []
    http.calls[0].deferred.addErrback(failure.append)
    assert http.calls[0].deferred.called
    assert failure == []  # the dispatcher consumed the cancellation
    assert clock.getDelayedCalls() == []


def test_close_leaves_nothing_behind() -> None:
    """close() cancels retries and requests; nothing is scheduled or sent after it."""
    hooks, http, clock = make()
    hooks.add("http://127.0.0.1:1/a", ["*"])
    hooks.add("http://127.0.0.1:2/b", ["*"])
    hooks.publish(record())
    http.refuse(index=0)  # /a waits to retry; /b is in flight
    assert len(clock.getDelayedCalls()) == 1
    done = hooks.close()
    assert done.called
    assert clock.getDelayedCalls() == []
    assert http.calls[1].deferred.called
    hooks.publish(record())
    clock.advance(60)
    assert len(http.calls) == 2
    assert hooks.list() == []
    with pytest.raises(DaemonStopping):
        hooks.add(URL, ["*"])


# -- filtering and validation ----------------------------------------------------


def test_event_filtering() -> None:
    """A hook gets a record when it asked for "*", its state, worker:* or worker:NAME."""
    hooks, http, _ = make()
    urls = {
        "all": ("http://127.0.0.1:1/", ["*"]),
        "ready": ("http://127.0.0.1:2/", ["ready"]),
        "worker": ("http://127.0.0.1:3/", ["worker:*"]),
        "mixed": ("http://127.0.0.1:4/", ["exited", "worker:progress", "exited"]),
    }
    ids = {name: hooks.add(url, events)["id"] for name, (url, events) in urls.items()}
    hooks.publish(record("starting"))
    hooks.publish(record("ready"))
    hooks.publish(record("progress", kind="worker"))
    hooks.publish(record("exited"))
    while any(not c.deferred.called for c in http.calls):  # each answer may send the next
        next(c for c in http.calls if not c.deferred.called).deferred.callback(FakeResponse(200))
    got: dict[str, list[str]] = {name: [] for name in urls}
    for call in http.calls:
        name = next(n for n, (u, _) in urls.items() if u == call.url)
        got[name].append(call.body["event"])
    assert got == {
        "all": ["starting", "ready", "progress", "exited"],
        "ready": ["ready"],
        "worker": ["progress"],
        "mixed": ["progress", "exited"],
    }
    assert next(r for r in hooks.list() if r["id"] == ids["mixed"])["events"] == [
        "exited", "worker:progress"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook",
    "https://127.0.0.2/x?y=1",
    "http://[::1]:9000/",
    "http://localhost:1234/",
    "HTTP://LOCALHOST/",
    "http://[::ffff:127.0.0.1]/",
])
def test_loopback_urls_accepted(url: str) -> None:
    """Loopback IP literals and localhost are accepted by the default allow list."""
    hooks, _, _ = make()
    assert hooks.add(url, ["*"])["url"] == url


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://192.168.1.1:80/",
    "http://[::ffff:10.0.0.1]/",
    "http://224.0.0.1/",
])
def test_addresses_outside_the_allow_list_are_not_allowed(url: str) -> None:
    """An IP outside the allow list (or unspecified, or multicast) raises HookNotAllowed."""
    hooks, _, _ = make()
    with pytest.raises(HookNotAllowed):
        hooks.add(url, ["*"])


@pytest.mark.parametrize("url", [
    "http://example.com/",
    "ftp://127.0.0.1/",
    "file:///etc/passwd",
    "",
    "127.0.0.1:80/x",
    "http://user:pw@127.0.0.1/",
    "http://127.0.0.1:99999/",
    "http://127.0.0.1/a b",
    "http://127.0.0.1/" + "x" * 3000,
    "http:///x",
    None,
])
def test_malformed_urls_are_rejected(url: Any) -> None:
    """A non-http(s) URL, a host name, credentials or junk raise HookRejected (not 403)."""
    hooks, _, _ = make()
    with pytest.raises(HookRejected) as info:
        hooks.add(url, ["*"])
    assert not isinstance(info.value, HookNotAllowed)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("events", [[], "ready", [""], ["a b"], [1], ["x" * 65], ["*"] * 33])
def test_bad_events_are_rejected(events: Any) -> None:
    """Events must be a non-empty list of short names."""
    hooks, _, _ = make()
    with pytest.raises(HookRejected):
        hooks.add(URL, events)


def test_allow_list_is_configurable() -> None:
    """Another allow list admits its own networks and, without loopback, not localhost."""
    hooks, _, _ = make(allow="10.0.0.0/8 fd00::/8")
    assert hooks.add("http://10.1.2.3/", ["*"])
    assert hooks.add("http://[fd00::5]/", ["*"])
    with pytest.raises(HookNotAllowed):
        hooks.add("http://localhost/", ["*"])
    with pytest.raises(HookNotAllowed):
        hooks.add("http://127.0.0.1/", ["*"])
    with pytest.raises(ValueError):
        HookDispatcher(Clock(), FakeHTTP(), allow="not a network")


def test_allow_list_as_networks_and_an_empty_one() -> None:
    """The settings' networks are taken as they are; an empty list is an error that says so."""
    hooks = HookDispatcher(Clock(), FakeHTTP(), allow=(ipaddress.ip_network("10.0.0.0/8"),))
    assert hooks.add("http://10.1.2.3/", ["*"])
    with pytest.raises(HookNotAllowed):
        hooks.add("http://127.0.0.1/", ["*"])
    for empty in ((), [], "", " , "):
        with pytest.raises(ValueError, match="the hook allow list is"):
            HookDispatcher(Clock(), FakeHTTP(), allow=empty)
    with pytest.raises(ValueError, match="is empty"):
        HookDispatcher(Clock(), FakeHTTP(), allow=())


def test_secret_shown_once_never_listed_or_logged() -> None:
    """add() shows the secret once; list() and the log never do."""
    with capturedLogs() as events:
        hooks, http, _ = make()
        hook = hooks.add(URL, ["*"])
        hooks.publish(record())
        http.refuse()
        hooks.remove(hook["id"])
    assert set(hook) == {"id", "url", "events", "secret"}
    assert len(hook["secret"]) >= 40
    hooks2, _, _ = make()
    shown = hooks2.add(URL, ["ready", "worker:*"])
    (row,) = hooks2.list()
    assert row == {"id": shown["id"], "url": URL, "events": ["ready", "worker:*"], "queued": 0,
                   "delivered": 0, "dropped": 0, "failed_attempts": 0}
    assert shown["secret"] not in json.dumps(hooks2.list())
    assert events
    text = " ".join(formatEvent(e) + repr(e) for e in events)
    assert hook["secret"] not in text


# -- with treq's real client ---------------------------------------------------------


def test_stub_treq_delivery() -> None:
    """treq's real client (over StubTreq) posts what a Klein subscriber can verify."""
    clock = Clock()
    subscriber = Subscriber()
    stub = StubTreq(subscriber.app.resource())
    hooks = HookDispatcher(clock, stub)
    hook = hooks.add(URL, ["*"])
    for name in ("starting", "ready", "stopping"):
        hooks.publish(record(name))
    for _ in range(10):
        stub.flush()
    assert subscriber.events() == [(1, "starting"), (2, "ready"), (3, "stopping")]
    assert subscriber.all_signed(hook["secret"])
    headers = subscriber.received[0][1]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Hook-Id"] == hook["id"]
    assert (headers["X-Event"], headers["X-Delivery"]) == ("starting", "1")
    assert hooks.list()[0]["delivered"] == 3
    assert clock.getDelayedCalls() == []


# -- end to end: real reactor, real sockets ---------------------------------------------


@pytest_twisted.ensureDeferred
async def test_end_to_end_delivery_and_recovery(reactor: Any, take_ports: Any) -> None:
    """Real HTTP: events arrive in order and signed; when the subscriber is down they
    are retried, and arrive in order once it is back on the same port."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    subscriber = Subscriber()
    site = Site(subscriber.app.resource())
    number = take_ports(1).low  # held while the subscriber is down too
    port = await endpoints.TCP4ServerEndpoint(reactor, number, interface="127.0.0.1").listen(site)
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    hooks = HookDispatcher(reactor, http, timeout=5.0, backoff_initial=0.05,
                           backoff_factor=2.0, backoff_cap=0.2)
    failed: Deferred[None] = Deferred()

    def observe(event: Any) -> None:
        if event.get("log_source") is hooks and "failed_attempts" in event:
            if not failed.called:
                failed.callback(None)

    globalLogPublisher.addObserver(observe)
    try:
        hook = hooks.add(f"http://127.0.0.1:{number}/hook", ["*"])
        for name in ("starting", "ready", "progress"):
            hooks.publish(record(name))
        await subscriber.arrived(3).addTimeout(10, reactor)
        assert subscriber.events() == [(1, "starting"), (2, "ready"), (3, "progress")]
        assert subscriber.all_signed(hook["secret"])

        await port.stopListening()
        for name in ("stopping", "exited", "backoff"):
            hooks.publish(record(name))
        await failed.addTimeout(10, reactor)
        assert hooks.list()[0]["failed_attempts"] >= 1
        assert len(subscriber.received) == 3

        again = endpoints.TCP4ServerEndpoint(reactor, number, interface="127.0.0.1")
        port = await again.listen(site)
        await subscriber.arrived(6).addTimeout(10, reactor)
        assert [seq for seq, _ in subscriber.events()] == [1, 2, 3, 4, 5, 6]
        assert [e for _, e in subscriber.events()][3:] == ["stopping", "exited", "backoff"]
        assert subscriber.all_signed(hook["secret"])
        assert [headers["X-Delivery"] for _, headers in subscriber.received] == [
            "1", "2", "3", "4", "5", "6"]
    finally:
        globalLogPublisher.removeObserver(observe)
        await hooks.close()
        stopped = port.stopListening()  # None if it already stopped
        if stopped is not None:
            await stopped
        await pool.closeCachedConnections()
