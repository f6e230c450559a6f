"""
Readiness: the worker says it listens (a line on fd 4) and one health check
confirms it; a worker that never says so is polled: at its spawn, 0.1 s after,
then at pauses that double, at most 1 s apart.
Probe timing on a Clock; the ready fd, the config wait and a worker without
the runtime through real processes on loopback ports from free_ports.
"""

from __future__ import annotations

import itertools
import os
import sys
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock, deferLater

from turberfield_twisted import Initiator, JobState
from turberfield_twisted.contract import EXIT_NO_CONFIG, LIFELINE_FD, READY_FD, READY_LINE
from turberfield_twisted.jobs.readiness import HealthProbe
from turberfield_twisted.launch.local import LocalLauncher
from turberfield_twisted.launch.protocol import WorkerProtocol
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.fakes import FakeHealth
from turberfield_twisted.testing.procs import children_of, kill_left, wait_gone

DEMO = "turberfield_twisted.demo.hello"
PLAIN = "turberfield_twisted.testing.plain"


def refusing() -> FakeHealth:
    """Health checks refused until ``healthy`` (each one kept in ``asked``)."""
    http = FakeHealth()
    http.healthy = False
    return http


def times(http: FakeHealth) -> list[float]:
    """When each check came, on the clock."""
    return [time for time, _ in http.asked]


def test_a_worker_that_says_it_listens_is_checked_at_once():
    """The signal wakes the probe: one check at that instant, and it is ready."""
    clock = Clock()
    http = refusing()
    listening: Deferred[None] = Deferred()
    done = HealthProbe(http, clock).wait("g", "http://127.0.0.1:1/health", listening)
    clock.advance(0.003)
    assert times(http) == [0.0] and not done.called
    http.healthy = True
    listening.callback(None)
    assert done.called and times(http) == [0.0, 0.003]
    assert clock.getDelayedCalls() == []


def test_a_worker_that_said_so_already_is_checked_at_once():
    """A worker heard before the wait begins (a Slurm job's report) is checked at once."""
    clock = Clock()
    http = FakeHealth()
    done = HealthProbe(http, clock).wait("g", "http://127.0.0.1:1/health", succeed(None))
    assert done.called and times(http) == [0.0]


def test_a_failed_check_after_the_signal_is_tried_again_soon():
    """Heard, but its check fails: the next check comes 0.1 s later, then pauses double."""
    clock = Clock()
    http = refusing()
    listening: Deferred[None] = Deferred()
    done = HealthProbe(http, clock).wait("g", "http://127.0.0.1:1/health", listening)
    clock.advance(0.05)
    listening.callback(None)
    clock.pump([0.01] * 80)
    assert times(http) == pytest.approx([0.0, 0.05, 0.15, 0.35, 0.75], abs=0.025)
    done.addErrback(lambda failure: failure.trap(CancelledError))
    done.cancel()


def test_a_worker_that_never_says_so_is_polled_at_most_1_s_apart():
    """
    No signal: a check at once, then 0.1 s after, then pauses doubling to a cap of
    1 s (a hundred workers that take seconds to start cost a few checks each).
    """
    clock = Clock()
    http = refusing()
    listening: Deferred[None] = Deferred()
    done = HealthProbe(http, clock).wait("g", "http://127.0.0.1:1/health", listening)
    clock.pump([0.01] * 800)  # the clock's steps blur each time by up to one step
    asked = times(http)
    pauses = [b - a for a, b in itertools.pairwise(asked)]
    assert pauses[:6] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0], abs=0.011)
    assert len(asked) == 11 and max(pauses) <= 1.0 + 0.011  # in 8 s
    done.addErrback(lambda failure: failure.trap(CancelledError))
    done.cancel()
    assert listening.called  # the wait gave up on the signal too
    assert clock.getDelayedCalls() == []


def test_a_module_that_said_it_listens_is_not_polled_before_its_next_says_so():
    """Once a module's worker has said it listens, its next worker is first checked
    when it says so: no check at its spawn nor at the early pauses."""
    clock = Clock()
    http = refusing()
    probe = HealthProbe(http, clock)
    first: Deferred[None] = Deferred()
    probe.wait("a", "http://127.0.0.1:1/health", first, "mod")
    http.healthy = True
    first.callback(None)  # the module's first worker says it listens: noted
    asked = len(http.asked)
    clock.advance(0.5)
    second: Deferred[None] = Deferred()
    done = probe.wait("b", "http://127.0.0.1:2/health", second, "mod")
    clock.advance(0.7)
    assert len(http.asked) == asked and not done.called  # 0.7 s: no check yet
    second.callback(None)
    assert done.called and times(http)[asked:] == [1.2]
    assert clock.getDelayedCalls() == []


def test_a_failed_check_after_such_a_workers_signal_is_tried_again_soon():
    """As for any worker: if the check its signal brought fails, the next is ``first``
    (0.1 s) later, not a doubled pause."""
    clock = Clock()
    http = refusing()
    probe = HealthProbe(http, clock, says_listening={"mod"})
    listening: Deferred[None] = Deferred()
    done = probe.wait("b", "http://127.0.0.1:2/health", listening, "mod")
    clock.advance(0.5)
    listening.callback(None)  # refused: the worker was not quite answering yet
    http.healthy = True
    clock.advance(0.1)
    assert done.called and times(http) == pytest.approx([0.5, 0.6])


def test_a_worker_of_such_a_module_that_never_says_so_is_checked_from_cap_on():
    """If the next worker of such a module never says it listens, it is checked
    ``cap`` (1 s) after its spawn, then polled as any other."""
    clock = Clock()
    http = refusing()
    probe = HealthProbe(http, clock, says_listening={"mod"})
    done = probe.wait("b", "http://127.0.0.1:2/health", Deferred(), "mod")
    clock.advance(0.999)
    assert times(http) == []
    clock.advance(0.001)
    assert times(http) == [1.0]
    clock.pump([0.01] * 120)  # the clock's steps blur each time by up to one step
    pauses = [b - a for a, b in itertools.pairwise(times(http))]
    assert pauses == pytest.approx([0.1, 0.2, 0.4], abs=0.011)
    http.healthy = True
    clock.advance(1.0)
    assert done.called


def test_a_module_never_heard_is_checked_at_once():
    """A module none of whose workers has said it listens is checked at the spawn."""
    clock = Clock()
    http = refusing()
    probe = HealthProbe(http, clock, says_listening={"other"})
    probe.wait("b", "http://127.0.0.1:2/health", Deferred(), "mod").cancel()
    assert times(http) == [0.0]


def test_the_ready_line_on_fd_4_fires_listening():
    """WorkerProtocol: a line on the ready fd fires listening(); output fds are unaffected."""
    lines: list[tuple[str, str]] = []
    protocol = WorkerProtocol("g", b"", lambda stream, text: lines.append((stream, text)))
    heard = protocol.listening()
    protocol.childDataReceived(READY_FD, b"READY")
    assert not heard.called
    protocol.childDataReceived(READY_FD, b"=1\n")
    assert heard.called and protocol.listening().called and lines == []


@pytest_twisted.ensureDeferred
async def test_a_spawned_worker_says_it_listens_then_answers(reactor, take_ports):
    """A real demo worker writes its ready line once it listens; its /health answers then."""
    launcher = LocalLauncher(reactor)
    ports = take_ports(10)
    cfg = initiator_config(ports.low, ports.high)
    cfg.add_section("rdy")
    cfg.set("rdy", "listen_port", str(ports.low))
    from turberfield_twisted.configtext import job_config_text

    process = launcher.spawn(DEMO, "rdy", ports.low, job_config_text(cfg, "rdy").encode(),
                             lambda stream, text: None)
    try:
        await process.listening().addTimeout(15, reactor)
        response = await treq.get(f"http://127.0.0.1:{ports.low}/health", timeout=5,
                                  reactor=reactor, persistent=False)
        assert response.code == 200
        await response.content()
    finally:
        pid = process.pid
        process.signal(15)
        await process.exited().addTimeout(15, reactor)
        await wait_gone(reactor, [pid])


@pytest_twisted.ensureDeferred
async def test_a_worker_without_the_runtime_is_found_ready_by_polling(reactor, take_ports):
    """A module that never writes the ready fd still gets ready (polled), answers, stops."""
    extra = f"\n[{PLAIN}]\n"
    ports = take_ports(10)
    init = Initiator(None, guid="init", cfg=initiator_config(ports.low, ports.high, extra=extra),
                     reactor=reactor)
    init.startService()
    try:
        guid = await init.launch(PLAIN)
        job = await init.ready(guid, timeout=15)
        assert job.state is JobState.READY
        pid = job.pid
        await init.stop(guid)
        await wait_gone(reactor, [pid])
    finally:
        await init.stopService()
    assert children_of(os.getpid()) == []


def _established_to(port: int) -> int:
    """How many ESTABLISHED loopback TCP connections have ``port`` as their far end."""
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


@pytest_twisted.ensureDeferred
async def test_no_connection_is_kept_to_a_ready_worker(reactor, take_ports):
    """Once its health check has answered, the daemon holds no connection to the worker."""
    ports = take_ports(10)
    init = Initiator(None, guid="init", cfg=initiator_config(ports.low, ports.high),
                     reactor=reactor)
    init.startService()
    try:
        guid = await init.launch(DEMO)
        job = await init.ready(guid, timeout=15)
        pid = job.pid
        for _ in range(200):  # the check's own connection closes within a few reactor turns
            if _established_to(job.port) == 0:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert _established_to(job.port) == 0
        await init.stop(guid)
        await wait_gone(reactor, [pid])
    finally:
        await init.stopService()


class _Watch(ProcessProtocol):
    def __init__(self) -> None:
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[Any] = Deferred()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == READY_FD and READY_LINE in data and not self.ready.called:
            self.ready.callback(None)

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value)


RUN = ("from turberfield_twisted.worker import Klein, run_worker;"
       " run_worker(Klein(), config_timeout=0.3)")


@pytest_twisted.ensureDeferred
async def test_with_a_lifeline_the_config_may_come_late(reactor, take_ports):
    """Past config_timeout, a worker whose lifeline is open still waits for its config."""
    late, control_port = take_ports(10).ports[:2]
    watch = _Watch()
    args = [sys.executable, "-P", "-c", RUN, "--guid", "late", "--port", str(late)]
    process = reactor.spawnProcess(watch, sys.executable, args, env=None,
                                   childFDs={0: "w", 1: "r", 2: "r", LIFELINE_FD: "w",
                                             READY_FD: "r"})
    try:  # it waits on its lifeline, which this process holds: ended here, however this goes
        for turn in range(2):  # a worker without one, spawned after, times out: twice over
            control = _Watch()
            reactor.spawnProcess(control, sys.executable,
                                 [sys.executable, "-P", "-c", RUN, "--guid", f"control{turn}",
                                  "--port", str(control_port)],
                                 env=None, childFDs={0: "w", 1: "r", 2: "r"})
            reason = await control.ended.addTimeout(15, reactor)
            assert reason.exitCode == EXIT_NO_CONFIG
        assert not watch.ended.called
        process.write(f"[late]\nlisten_port = {late}\n".encode())
        process.closeStdin()
        await watch.ready.addTimeout(15, reactor)
        process.signalProcess("TERM")
        await watch.ended.addTimeout(15, reactor)
    finally:
        await kill_left(reactor, [process.pid] if process.pid else [])


@pytest_twisted.ensureDeferred
async def test_without_a_lifeline_no_config_in_time_is_exit_66(reactor, take_ports):
    """Run by hand (no lifeline), a worker whose stdin stays open exits 66 after its timeout."""
    watch = _Watch()
    args = [sys.executable, "-P", "-c", RUN, "--guid", "byhand", "--port",
            str(take_ports(1).low)]
    reactor.spawnProcess(watch, sys.executable, args, env=None,
                         childFDs={0: "w", 1: "r", 2: "r"})
    reason = await watch.ended.addTimeout(15, reactor)
    assert reason.exitCode == EXIT_NO_CONFIG
