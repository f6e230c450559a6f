"""
Web-hook delivery and reconnects: a try that meets a pooled connection the receiver
closed is no failed attempt, and once one delivery to a receiver gets through, every
hook of that receiver sends at once. On a Clock, then with a real HTTP/1.0 receiver.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.web.client import ResponseNeverReceived

from turberfield_twisted.hooks.dispatcher import FRESH_TRIES, HookDispatcher
from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState
from turberfield_twisted.launch.protocol import LineSplitter
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone
from turberfield_twisted.worker.parent import make_http

URL = "http://127.0.0.1:9000"


def event(n: int = 0, name: str = "ready") -> JobEvent:
    return JobEvent(EventKind.STATE, name, f"g{n}", "m", float(n), JobState(name))


class _Answered:
    code = 204

    def content(self) -> Deferred[bytes]:
        return succeed(b"")


class Posts:
    """A treq-like client: each ``post`` waits for the test to answer it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Deferred[Any]]] = []

    def post(self, url: str, data: bytes, **kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((url, d))
        return d

    def pending(self) -> list[str]:
        return [url for url, d in self.calls if not d.called]

    def answer(self, url: str) -> None:
        next(d for u, d in self.calls if u == url and not d.called).callback(_Answered())

    def fail(self, url: str, exc: Exception) -> None:
        next(d for u, d in self.calls if u == url and not d.called).errback(exc)


def make() -> tuple[HookDispatcher, Posts, Clock]:
    clock, http = Clock(), Posts()
    return HookDispatcher(clock, http, backoff_initial=10, backoff_cap=3600), http, clock


def stale() -> Exception:
    return ResponseNeverReceived([])


def test_a_closed_pooled_connection_is_not_a_failed_attempt():
    """A try on a connection the receiver had closed goes again at once, uncounted; only a
    run of FRESH_TRIES of them in a row counts, and backs off."""
    hooks, http, clock = make()
    hooks.add(f"{URL}/h", ["*"])
    hooks.publish(event())
    for _ in range(FRESH_TRIES):
        http.fail(f"{URL}/h", stale())
        assert http.pending() == [f"{URL}/h"]  # again, at once
    assert hooks.list()[0]["failed_attempts"] == 0
    http.fail(f"{URL}/h", stale())
    assert http.pending() == [] and len(clock.getDelayedCalls()) == 1
    assert hooks.list()[0]["failed_attempts"] == 1


def test_once_one_delivery_gets_through_the_queue_goes_at_once():
    """After a retry gets through, every queued record is sent with no further wait."""
    hooks, http, clock = make()
    hooks.add(f"{URL}/h", ["*"])
    for n in range(5):
        hooks.publish(event(n))
    http.fail(f"{URL}/h", ConnectionRefusedError())
    (retry,) = clock.getDelayedCalls()
    clock.advance(retry.getTime() - clock.seconds())
    for _ in range(5):
        http.answer(f"{URL}/h")
    assert clock.getDelayedCalls() == []
    assert (hooks.list()[0]["delivered"], hooks.list()[0]["queued"]) == (5, 0)


def test_a_delivery_through_wakes_the_other_hooks_of_its_receiver():
    """A hook waiting out a retry sends at once when another hook's delivery to the same
    receiver (scheme, host, port) gets through; a hook of another receiver waits on."""
    hooks, http, clock = make()
    hooks.add(f"{URL}/b", ["exited"])
    hooks.add("http://127.0.0.1:9001/c", ["exited"])
    hooks.publish(event(0, "exited"))
    http.fail(f"{URL}/b", ConnectionRefusedError())
    http.fail("http://127.0.0.1:9001/c", ConnectionRefusedError())
    assert len(clock.getDelayedCalls()) == 2
    hooks.add(f"{URL}/a", ["ready"])
    hooks.publish(event(1, "ready"))
    http.answer(f"{URL}/a")
    assert http.pending() == [f"{URL}/b"]
    assert len(clock.getDelayedCalls()) == 1  # the other receiver's retry
    http.answer(f"{URL}/b")
    rows = {row["url"]: row for row in hooks.list()}
    assert rows[f"{URL}/b"]["delivered"] == 1 and rows[f"{URL}/b"]["failed_attempts"] == 1
    assert rows["http://127.0.0.1:9001/c"]["delivered"] == 0


def test_a_hook_its_receiver_answered_with_an_error_keeps_its_backoff():
    """A hook whose last try got HTTP 503 is not woken by another hook's delivery to the
    same receiver: the receiver is up, and said no (no retries at the other's rate)."""
    hooks, http, clock = make()
    hooks.add(f"{URL}/bad", ["exited"])
    hooks.publish(event(0, "exited"))
    next(d for u, d in http.calls if u == f"{URL}/bad").callback(_Status(503))
    hooks.add(f"{URL}/ok", ["ready"])
    hooks.publish(event(1, "ready"))
    http.answer(f"{URL}/ok")
    assert http.pending() == [] and len(clock.getDelayedCalls()) == 1


class _Status:
    def __init__(self, code: int):
        self.code = code

    def content(self) -> Deferred[bytes]:
        return succeed(b"")


# -- with a real receiver ------------------------------------------------------------


class Receiver(ProcessProtocol):
    """testing.plain_receiver (HTTP/1.0, one connection per request): ``seqs`` it got."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.listening: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self._waiting: list[tuple[int, Deferred[None]]] = []
        self._split = LineSplitter(self._line)
        self.pid = 0

    def start(self, reactor: Any, port: int) -> None:
        argv = [sys.executable, "-P", "-m", "turberfield_twisted.testing.plain_receiver",
                str(port)]
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
        self.pid = reactor.spawnProcess(self, argv[0], argv, env=env).pid

    def got(self, count: int) -> Deferred[None]:
        """Fire once ``count`` deliveries have come."""
        if len(self.seqs) >= count:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((count, d))
        return d

    def _line(self, line: str) -> None:
        if line == "listening":
            self.listening.callback(None)
        elif line.isdigit():
            self.seqs.append(int(line))
            for item in list(self._waiting):
                if len(self.seqs) >= item[0]:
                    self._waiting.remove(item)
                    item[1].callback(None)

    def outReceived(self, data: bytes) -> None:
        self._split.feed(data)

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)

    async def stop(self, reactor: Any) -> None:
        if self.pid and not self.ended.called:
            os.kill(self.pid, signal.SIGTERM)
            await self.ended.addTimeout(30, reactor)
            await wait_gone(reactor, [self.pid])


@pytest_twisted.ensureDeferred
async def test_an_http10_receiver_that_answers_every_delivery_costs_no_failed_attempt(reactor):
    """50 deliveries to a receiver that closes every connection: 50 delivered, none failed."""
    http, pool = make_http(reactor)
    receiver = Receiver()
    with free_ports(10) as ports:
        hooks = HookDispatcher(reactor, http, allow="127.0.0.0/8")
        try:
            receiver.start(reactor, ports.low)
            await receiver.listening.addTimeout(30, reactor)
            hooks.add(f"http://127.0.0.1:{ports.low}/hook", ["*"])
            for n in range(50):
                hooks.publish(event(n))
            await receiver.got(50).addTimeout(60, reactor)
            [row] = hooks.list()
            assert (row["delivered"], row["failed_attempts"]) == (50, 0)
            assert receiver.seqs == list(range(1, 51))
        finally:
            hooks.close()
            await pool.closeCachedConnections()
            await receiver.stop(reactor)
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_the_first_delivery_through_wakes_a_hook_waiting_an_hour(reactor):
    """
    A hook whose receiver was down waits out an hour's retry; the receiver comes back and
    another hook's delivery to it gets through: the first hook's record follows at once.
    """
    http, pool = make_http(reactor)
    receiver = Receiver()
    with free_ports(10) as ports:
        hooks = HookDispatcher(reactor, http, allow="127.0.0.0/8", backoff_initial=3600,
                               backoff_cap=3600)
        try:
            waiting = hooks.add(f"http://127.0.0.1:{ports.low}/waiting", ["exited"])
            retried = _logged_retry(hooks)
            hooks.publish(event(0, "exited"))
            await retried.addTimeout(30, reactor)
            receiver.start(reactor, ports.low)
            await receiver.listening.addTimeout(30, reactor)
            hooks.add(f"http://127.0.0.1:{ports.low}/through", ["ready"])
            hooks.publish(event(1, "ready"))
            await receiver.got(2).addTimeout(30, reactor)
            rows = {row["id"]: row for row in hooks.list()}
            assert (rows[waiting["id"]]["delivered"], rows[waiting["id"]]["queued"]) == (1, 0)
        finally:
            hooks.close()
            await pool.closeCachedConnections()
            await receiver.stop(reactor)
    assert children_of(os.getpid()) == []


def _logged_retry(hooks: HookDispatcher) -> Deferred[None]:
    """Fire once ``hooks`` logs a retry (it has one waiting)."""

    def observe(entry: dict[str, Any]) -> None:
        if (not d.called and entry.get("log_source") is hooks
                and "retry in" in entry.get("log_format", "")):
            globalLogPublisher.removeObserver(observe)
            d.callback(None)

    d: Deferred[None] = Deferred(lambda _: globalLogPublisher.removeObserver(observe))
    globalLogPublisher.addObserver(observe)
    return d
