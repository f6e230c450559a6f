"""Fixtures shared by the suite: configs and a started Initiator."""

from __future__ import annotations

import os
import signal
import textwrap
from typing import Any

import pytest
import pytest_twisted

from turberfield_twisted.config import parse_config
from turberfield_twisted.testing.procs import children_of, wait_gone


def initiator_config(low: int = 21200, high: int = 21299, extra: str = "", **own: Any) -> Any:
    """A config with an initiator section ``init`` and the demo module's section."""
    keys = {"listen_addr": "127.0.0.1", "listen_port": "0", "child_port_min": str(low),
            "child_port_max": str(high), "ready_timeout": "15", "stop_timeout": "5", **own}
    body = "\n".join(f"{k} = {v}" for k, v in keys.items())
    text = f"[init]\n{body}\n\n" + textwrap.dedent("""
        [turberfield_twisted.demo.hello]
        greeting = hello
        secret = s3cr3t-demo-value
        overridable = greeting, api_key
        """) + textwrap.dedent(extra)
    return parse_config(text)


@pytest.fixture
def state(tmp_path: Any) -> Any:
    """A state dir, locked, closed after the test."""
    from turberfield_twisted.state import StateDir

    opened = StateDir.open(tmp_path / "state")
    opened.lock()
    yield opened
    opened.close()


@pytest.fixture
def reactor() -> Any:
    """The installed (asyncio) reactor."""
    from twisted.internet import reactor as installed

    return installed


@pytest_twisted.async_yield_fixture
async def initiator(reactor: Any) -> Any:
    """A started Initiator on the real reactor; stopped and checked for leftovers after."""
    from turberfield_twisted import Initiator

    init = Initiator(None, guid="init", cfg=initiator_config(), reactor=reactor)
    init.startService()
    yield init
    pids = [job.pid for job in init.workers.values() if job.pid]
    await init.stopService()
    await wait_gone(reactor, pids)
    assert children_of(os.getpid()) == []


@pytest_twisted.async_yield_fixture
async def daemons(reactor: Any, tmp_path: Any) -> Any:
    """
    ``await daemons(low, high, extra="")`` starts a ``twistd -n proactor``
    on a free loopback port with that child port range (``extra`` more
    lines for its ``[proactor]`` section) and returns it listening. After
    the test, however it ended, every daemon and every worker it started
    is gone.
    """
    from turberfield_twisted.testing.daemon import Daemon

    started: list[Daemon] = []

    async def start(low: int, high: int, extra: str = "", listen: bool = True) -> Daemon:
        n = len(started)
        config = tmp_path / f"proactor-{n}.cfg"
        config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {low}\n"
                          f"child_port_max = {high}\n{extra}")
        daemon = Daemon.start(reactor, tmp_path / f"state-{n}", config=config, cwd=tmp_path)
        started.append(daemon)
        if listen:
            await daemon.listening.addTimeout(30, reactor)
        return daemon

    yield start
    for daemon in started:
        workers = children_of(daemon.pid or 0)
        daemon.signal(signal.SIGTERM)
        await daemon.ended.addTimeout(30, reactor)
        await wait_gone(reactor, workers)
    assert children_of(os.getpid()) == []
