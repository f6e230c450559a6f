"""
Web-hook delivery after an outage, to a real receiver that closes every connection
(the standard library's http.server): the queue drains at full rate once it is back.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import globalLogPublisher

from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState
from turberfield_twisted.launch.protocol import LineSplitter
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone
from turberfield_twisted.worker.parent import make_http

EVENTS = 1000


class _Receiver(ProcessProtocol):
    """The receiver's stdout: ``listening``, then one delivered seq a line."""

    def __init__(self, count: int):
        self.seqs: list[int] = []
        self.listening: Deferred[None] = Deferred()
        self.all_in: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self._count = count
        self._split = LineSplitter(self._line)

    def _line(self, line: str) -> None:
        if line == "listening":
            self.listening.callback(None)
        elif line.isdigit():
            self.seqs.append(int(line))
            if len(set(self.seqs)) >= self._count and not self.all_in.called:
                self.all_in.callback(None)

    def outReceived(self, data: bytes) -> None:
        self._split.feed(data)

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


def _retry_at_least(seconds: float) -> Deferred[None]:
    """Fire once the dispatcher logs a retry at least ``seconds`` away."""

    def observe(event: dict[str, Any]) -> None:
        if (not d.called and "retry in" in event.get("log_format", "")
                and event.get("delay", 0) >= seconds):
            globalLogPublisher.removeObserver(observe)
            d.callback(None)

    d: Deferred[None] = Deferred(lambda _: globalLogPublisher.removeObserver(observe))
    globalLogPublisher.addObserver(observe)
    return d


@pytest_twisted.ensureDeferred
async def test_a_receiver_that_closes_every_connection_gets_the_queue_at_full_rate(reactor):
    """
    1,000 events queue while the receiver is down for about 30 s (the backoff reaches a
    16 s retry); it comes back and gets all of them within 30 s, in order.
    """
    held = free_ports(10)  # the receiver's port, held until it is gone
    port = held.low
    http, pool = make_http(reactor)
    hooks = HookDispatcher(reactor, http, allow="127.0.0.0/8")
    hooks.add(f"http://127.0.0.1:{port}/hook", ["*"])
    long_retry = _retry_at_least(12.8)  # 16 s less at most its 20 % jitter
    for n in range(EVENTS):
        hooks.publish(JobEvent(EventKind.STATE, "ready", f"g{n}", "m", float(n),
                               JobState.READY))
    receiver = _Receiver(EVENTS)
    try:
        await long_retry.addTimeout(90, reactor)
        argv = [sys.executable, "-P", "-m", "turberfield_twisted.testing.plain_receiver",
                str(port)]
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
        pid = reactor.spawnProcess(receiver, argv[0], argv, env=env).pid
        await receiver.listening.addTimeout(30, reactor)
        back = reactor.seconds()
        await receiver.all_in.addTimeout(30, reactor)
        took = reactor.seconds() - back
        seqs = receiver.seqs
        assert list(dict.fromkeys(seqs)) == list(range(1, EVENTS + 1)), "out of order"
        assert seqs == sorted(seqs)  # at least once: a repeat could only follow its first
        assert took < 30
        [row] = hooks.list()
        assert (row["delivered"], row["queued"], row["dropped"]) == (EVENTS, 0, 0)
    finally:
        hooks.close()
        await pool.closeCachedConnections()
        if not receiver.ended.called:
            os.kill(pid, signal.SIGTERM)
            await receiver.ended.addTimeout(30, reactor)
            await wait_gone(reactor, [pid])
        held.release()
    assert children_of(os.getpid()) == []
