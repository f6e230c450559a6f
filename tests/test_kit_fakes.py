"""
The testing kit's fakes on a Clock (launch, restart, backoff and stop of
an Initiator with no process), its free port ranges, and its helpers for
servers and processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from zope.interface.verify import verifyObject

from turberfield_twisted import ILauncher, IWorkerProcess, NotReady
from turberfield_twisted.launch.local import LocalLauncher
from turberfield_twisted.testing import (
    FakeLauncher,
    FakeProcessReactor,
    NoFreeRange,
    WorkerClient,
    children_of,
    free_ports,
    group_members,
    initiator_on_clock,
    kill_left,
    kill_now,
    pid_alive,
    processes,
    serve,
    wait_gone,
)
from turberfield_twisted.testing.ports import GRAIN, WINDOW_ENV, _window
from turberfield_twisted.testing.procs import idle

MOD = "my.worker"


def world(**module: object):
    """An Initiator on a Clock with the fake launcher; MOD restarts 1, 2, 4 ... s apart."""
    policy = {"backoff_initial": 1, "backoff_factor": 2, "jitter": 0, "max_restarts": 3,
              "restart_window": 100, **module}
    return initiator_on_clock({"init": {"child_port_min": 9000, "child_port_max": 9009,
                                        "stop_timeout": 5},
                               MOD: policy})


def test_the_fakes_provide_the_real_interfaces():
    """Each fake passes verifyObject against the interface it stands for."""
    reactor = FakeProcessReactor()
    launcher = FakeLauncher()
    worker = launcher.spawn(MOD, "g", 9000, b"[g]\n", lambda stream, line: None)
    assert verifyObject(IReactorProcess, reactor)
    assert verifyObject(ILauncher, launcher)
    assert verifyObject(IWorkerProcess, worker)
    real = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
    process = real.spawn(MOD, "g", 9000, b"[g]\n", lambda stream, line: None)
    assert verifyObject(IProcessTransport, reactor.spawned[0])
    assert verifyObject(IWorkerProcess, process)


@pytest_twisted.ensureDeferred
async def test_a_crash_restarts_at_once_then_backs_off_then_gives_up():
    """On a Clock: the first restart is due at once, the next after 1 s, 2 s; then failed."""
    w = world()
    guid = await w.init.launch(MOD)
    assert w.states(guid) == ["waiting", "starting", "ready"]
    for delay in (0, 1, 2):
        w.launcher.latest(guid).exit(1)
        assert w.init.job(guid).state == "backoff"
        if delay:
            w.clock.advance(delay - 0.001)
            assert w.init.job(guid).state == "backoff"
        w.clock.advance(0.001 if delay else 0)
        assert w.init.job(guid).state == "ready"
    w.launcher.latest(guid).exit(1)
    assert w.init.job(guid).state == "failed"
    assert len(w.launcher.spawned) == 4 and w.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_a_stop_is_term_then_kill_after_stop_timeout():
    """A worker that ignores TERM gets KILL once stop_timeout has passed on the clock."""
    w = world()
    guid = await w.init.launch(MOD)
    worker = w.launcher.latest(guid)
    worker.dies_on = frozenset({signal.SIGKILL})
    done = w.init.stop(guid)
    assert worker.signals == [signal.SIGTERM] and not done.called
    w.clock.advance(5)
    assert worker.signals[:2] == [signal.SIGTERM, signal.SIGKILL]
    assert (await done).signal == signal.SIGKILL
    assert w.states(guid)[-2:] == ["stopping", "exited"]


@pytest_twisted.ensureDeferred
async def test_a_worker_that_never_answers_is_not_ready_in_time():
    """Health checks that never answer: ready() fails once its timeout passes."""
    w = world()
    w.health.healthy, w.health.silent = False, True
    guid = await w.init.launch(MOD, guid="quiet")
    ready = w.init.ready(guid, timeout=3)
    w.clock.advance(3)
    with pytest.raises(NotReady):
        await ready
    w.launcher.latest(guid).exit(0)


def own_locks(monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
    """From now on in this test, free_ports keeps its lock files in ``where`` (under the
    temp dir, as it keeps them), which no other test run looks in."""
    monkeypatch.setattr(tempfile, "tempdir", str(where))


def test_free_ports_are_free_in_the_window_and_held_until_released(monkeypatch, tmp_path):
    """A block in the window, every port bindable; held blocks and used ports are skipped."""
    with free_ports(size=20) as ours:  # a window no other run may take or bind meanwhile
        window = (ours.low, ours.high)
        with pytest.raises(NoFreeRange):  # held, as if by another run
            free_ports(size=10, window=window)
        own_locks(monkeypatch, tmp_path)
        first = free_ports(size=10, window=window)
        try:
            assert first.ports == range(first.low, first.low + 10)
            assert ours.low <= first.low and first.high <= ours.high
            second = free_ports(size=10, window=window)
            assert {first.low, second.low} == {ours.low, ours.low + 10}
            second.release()
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a listener would
                sock.bind(("127.0.0.1", ours.low if first.low == ours.low + 10 else ours.low + 10))
                sock.listen()
                with pytest.raises(NoFreeRange,
                                   match=f"no 10 free ports in a row in {ours.low}-{ours.high}"):
                    free_ports(size=10, window=window)
        finally:
            first.release()
        with free_ports(size=11, window=window) as both:
            assert (both.low, both.high) == window


def test_the_window_comes_from_the_environment(monkeypatch, tmp_path):
    """TURBERFIELD_TWISTED_PORTS=LOW-HIGH; anything else is refused, saying how."""
    assert _window("27500-27599") == (27500, 27599)
    assert _window("") == (20000, 32767)
    for bad in ("27500", "a-b", "80-90", "30000-20000"):
        with pytest.raises(ValueError, match=WINDOW_ENV):
            _window(bad)
    with free_ports(size=10) as ours:  # a window no other run may take or bind meanwhile
        monkeypatch.setenv(WINDOW_ENV, f"{ours.low}-{ours.high}")
        own_locks(monkeypatch, tmp_path)
        with free_ports(size=5) as held:
            assert (held.low, held.high) == (ours.low, ours.high)


@pytest_twisted.ensureDeferred
async def test_serve_down_waits_until_every_connection_is_gone(reactor):
    """down() closes the port and cuts each accepted connection, and fires once they are gone."""
    from klein import Klein
    from twisted.web.server import Site

    app = Klein()

    @app.route("/")
    def root(request: object) -> bytes:
        return b"up"

    listening = await serve(reactor, Site(app.resource()))
    host, port = listening.address
    from turberfield_twisted.testing.client import real_client

    client = real_client(reactor, f"http://{host}:{port}")
    assert await (await client.get("/")).text() == "up"
    assert listening.connections == 1  # kept open by the client's pool
    await listening.down()
    assert listening.connections == 0
    await client.close()


@pytest_twisted.ensureDeferred
async def test_serve_listens_below_the_ephemeral_range_on_a_port_held_until_down(reactor):
    """No port given: the first of a free_ports block of the window (below 32768, where
    the kernel never picks a connection's own port), no other run's until down()."""
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    listening = await serve(reactor, Site(Resource()))
    port = listening.address[1]
    block = (port, port + GRAIN - 1)
    try:
        low, high = _window(os.environ.get(WINDOW_ENV))
        assert low <= port <= high and port < 32768
        with pytest.raises(NoFreeRange):
            free_ports(size=1, window=block)
    finally:
        await listening.down()
    with free_ports(size=1, window=block) as again:
        assert again.low == port


@pytest_twisted.ensureDeferred
async def test_kill_left_and_kill_now_end_live_processes_by_pid_and_name_them(reactor):
    """SIGKILL to each pid still alive, gone once they return; the ones that were alive
    are named, not one that had already ended."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(timeout=10)
    live = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE) for _ in range(2)]
    try:
        assert await kill_left(reactor, [live[0].pid, ended.pid]) == [live[0].pid]
        assert not pid_alive(live[0].pid)
        assert kill_now([live[1].pid, ended.pid]) == [live[1].pid]
        assert not pid_alive(live[1].pid)
    finally:
        for child in live:
            child.stdin.close()
            child.wait(timeout=10)
    assert [child.returncode for child in live] == [-signal.SIGKILL] * 2


@pytest_twisted.ensureDeferred
async def test_wait_gone_fires_on_exit_and_times_out_on_a_live_process(reactor):
    """A pidfd per process: fires once all have exited; a live one times out."""
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    slow = idle()
    await wait_gone(reactor, [quick.pid], timeout=10)
    with pytest.raises(DeferredTimeout):
        await wait_gone(reactor, [slow.pid], timeout=0.2)
    slow.kill()
    await wait_gone(reactor, [slow.pid], timeout=10)
    quick.wait()
    slow.wait()
    assert reactor.getReaders() == [r for r in reactor.getReaders() if "pidfd" not in repr(r)]


def test_a_worker_client_passes_its_timeout_and_reactor():
    """Each method is treq's, on the worker's URL, with the client's timeout and reactor."""
    calls = []

    class Recorder:
        def request(self, method: str, url: str, **kwargs: object) -> None:
            calls.append((method, url, kwargs))

    client = WorkerClient(Recorder(), "http://127.0.0.1:9/", "R", timeout=3)
    for verb in ("get", "head", "post", "put", "patch", "delete"):
        getattr(client, verb)("/x", json=1)
    assert calls == [(verb.upper(), "http://127.0.0.1:9/x", {"json": 1, "timeout": 3,
                                                            "reactor": "R"})
                     for verb in ("get", "head", "post", "put", "patch", "delete")]
    assert client.close().called


def test_processes_walks_proc_once_for_parent_group_and_argv():
    """processes(where, argv=True): each live process's parent, group and argv, filtered."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "marker"],
                             stdin=subprocess.PIPE)
    try:
        [found] = processes(lambda proc: proc.ppid == os.getpid() and
                            proc.argv[-1:] == ("marker",), argv=True)
        assert found.pid == child.pid and found.pgid == os.getpgid(child.pid)
        assert found.argv[0] == sys.executable
        assert child.pid in children_of(os.getpid())
        assert child.pid in group_members(os.getpgid(child.pid))
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    assert processes(lambda proc: proc.pid == child.pid) == []
