"""
The testing kit's real-process fixture: an initiator on free loopback
ports, a worker launched and ready, and nothing left after, through the
async context managers and through the pytest plugin's fixtures.
"""

from __future__ import annotations

import os
import signal

import pytest
import pytest_twisted
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.defer import fail

from turberfield_twisted import ConfigError, JobExited
from turberfield_twisted.testing import (
    DEMO,
    NoFreeRange,
    ProcessesLeft,
    children_of,
    free_ports,
    pid_alive,
    running_initiator,
    running_worker,
)
from turberfield_twisted.testing.daemon import Daemons
from turberfield_twisted.testing.ports import GRAIN
from turberfield_twisted.testing.procs import idle

SECTION = {"greeting": "hello", "overridable": "greeting"}
T = "turberfield_twisted.testing."


@pytest_twisted.ensureDeferred
async def test_a_worker_runs_answers_posts_and_takes_config_then_is_gone(reactor):
    """The fixture's worker: real HTTP, events through the initiator, live config; then gone."""
    async with running_worker(DEMO, SECTION, session="s1") as worker:
        pid = worker.pid
        assert pid is not None and pid_alive(pid)
        body = await (await worker.client.get("/")).json()
        assert (body["guid"], body["session"], body["config"]["greeting"]) == (
            worker.guid, "s1", "hello")
        assert (await worker.client.post("/notify", json={"n": 1})).code == 202
        assert await worker.events.next() == ("notified", {"n": 1})
        await worker.push_config({"greeting": "hej"})
        assert (await (await worker.client.get("/")).json())["config"]["greeting"] == "hej"
        [job] = await worker.initiator.jobs()
        assert (job["guid"], job["port"], job["state"]) == (worker.guid, worker.port, "ready")
        assert worker.url == f"http://127.0.0.1:{worker.port}"
    assert not pid_alive(pid)
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_its_ports_are_held_until_the_end():
    """While it runs no other test run can take its port block; after, it can."""
    async with running_worker(DEMO, SECTION) as worker:
        block = worker.owner.ports
        assert block.low <= worker.port <= block.high
        with pytest.raises(NoFreeRange):
            free_ports(size=block.high - block.low + 1, window=(block.low, block.high))
    again = free_ports(size=block.high - block.low + 1, window=(block.low, block.high))
    assert (again.low, again.high) == (block.low, block.high)
    again.release()


@pytest_twisted.ensureDeferred
async def test_a_process_left_behind_fails_the_test_and_is_killed():
    """A process the test started and did not end: killed, and ProcessesLeft names it."""
    stray = None
    with pytest.raises(ProcessesLeft, match="processes left behind") as raised:
        async with running_initiator({DEMO: SECTION}):
            stray = idle()
    assert stray is not None and str(stray.pid) in str(raised.value)
    assert stray.wait(timeout=10) == -signal.SIGKILL


@pytest_twisted.ensureDeferred
async def test_a_stop_that_fails_still_ends_every_process_and_lets_the_ports_go():
    """The initiator's stop fails: its worker is killed by pid all the same, ProcessesLeft
    names it (the failure chained to it), and its ports are no longer held."""
    with pytest.raises(ProcessesLeft) as raised:
        async with running_worker(DEMO, {**SECTION, "restart": "never"}) as worker:
            pid, block, init = worker.pid, worker.owner.ports, worker.owner.init
            stop = init.stopService
            init.stopService = lambda: fail(RuntimeError("the stop failed"))  # type: ignore[method-assign]
    try:
        assert str(pid) in str(raised.value)
        assert isinstance(raised.value.__context__, RuntimeError)
        assert pid is not None and not pid_alive(pid)
        with free_ports(size=block.high - block.low + 1, window=(block.low, block.high)):
            pass
    finally:
        await stop()  # the service itself, for good
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_a_daemon_that_does_not_end_is_killed_and_the_others_still_stopped(
        reactor, tmp_path):
    """Daemons.stop: one daemon does not end on SIGTERM in time: it is killed by pid, the
    other is stopped all the same and every port let go, then the timeout is raised."""
    started = Daemons(reactor, tmp_path)
    stuck, other = await started.start(), await started.start()
    blocks = [daemon.ports for daemon in (stuck, other)]
    assert stuck.pid is not None and other.pid is not None
    os.kill(stuck.pid, signal.SIGSTOP)  # a SIGTERM waits until it is continued; SIGKILL not
    with pytest.raises(DeferredTimeout):
        await started.stop(timeout=2)
    assert not pid_alive(stuck.pid) and not pid_alive(other.pid)
    for block in blocks:
        assert block is not None
        with free_ports(size=block.high - block.low + 1, window=(block.low, block.high)):
            pass
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_a_daemons_api_port_is_below_the_ephemeral_range_and_held_until_it_ends(
        reactor, tmp_path):
    """Daemon.start told no address: its control API on a free_ports port (below 32768),
    which no other run may take until the daemon has ended."""
    started = Daemons(reactor, tmp_path)
    try:
        daemon = await started.start()
        port = int(daemon.url.rsplit(":", 1)[1])
        assert port < 32768
        with pytest.raises(NoFreeRange):
            free_ports(size=1, window=(port, port + GRAIN - 1))
    finally:
        await started.stop()
    with free_ports(size=1, window=(port, port + GRAIN - 1)) as again:
        assert again.low == port


@pytest_twisted.ensureDeferred
async def test_a_worker_that_cannot_start_is_an_error_and_nothing_is_left():
    """A module that raises on import: JobExited from the launch; the block still ends whole."""
    with pytest.raises(JobExited):
        async with running_worker(T + "import_error", {"restart": "never"}):
            pass  # pragma: no cover
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_a_bad_config_is_the_initiators_error_and_leaves_nothing():
    """The config is checked as the daemon checks it: ConfigError naming the key."""
    with pytest.raises(ConfigError, match="backoff_initial"):
        async with running_initiator({DEMO: {"backoff_initial": "soon"}}):
            pass  # pragma: no cover
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_several_workers_of_one_initiator_and_its_own_settings():
    """running_initiator launches several; its own keys go to its section."""
    async with running_initiator({DEMO: SECTION, T + "plain": {}}, stop_timeout=2) as running:
        first = await running.launch(DEMO)
        second = await running.launch(T + "plain")
        assert first.port != second.port
        assert running.init.settings.initiator.stop_timeout == 2
        assert {job["guid"] for job in await running.client.jobs()} == {first.guid, second.guid}
        await first.stop()
        assert running.init.job(first.guid).state == "exited"


@pytest_twisted.ensureDeferred
async def test_the_plugins_fixtures_start_a_worker_and_an_initiator(start_worker,
                                                                   start_initiator):
    """``start_worker`` and ``start_initiator``: ended by the fixture after the test."""
    worker = await start_worker(DEMO, SECTION)
    assert (await worker.client.get("/health")).code == 200
    running = await start_initiator({DEMO: SECTION})
    other = await running.launch(DEMO)
    assert other.guid != worker.guid
