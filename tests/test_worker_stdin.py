"""
A worker run by hand: its stdin is /dev/null, a file or a terminal instead of the
daemon's pipe. It never hangs: it reads a file to EOF and serves, or exits 66 at once
saying that the config must come on stdin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from turberfield_twisted.contract import EXIT_NO_CONFIG
from turberfield_twisted.launch.protocol import ExitStatus, LineSplitter
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import wait_gone

DEMO = "turberfield_twisted.demo.hello"


class _Worker(ProcessProtocol):
    """A demo worker whose stdin is ``stdin_fd``: its stderr lines, its end, its first match."""

    def __init__(self, wanted: str):
        self.lines: list[str] = []
        self.ended: Deferred[ExitStatus] = Deferred()
        self.seen: Deferred[str] = Deferred()
        self._wanted = wanted
        self._split = LineSplitter(self._line)

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if self._wanted in line and not self.seen.called:
            self.seen.callback(line)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self._split.feed(data)

    def processEnded(self, reason: Any) -> None:
        self._split.flush()
        self.ended.callback(ExitStatus.from_reason(reason))


@pytest.fixture
def port() -> Iterator[int]:
    """A loopback port of the kit's, free and held for the test."""
    with free_ports(10) as held:
        yield held.low


def spawn(reactor: Any, stdin_fd: int, port: int, wanted: str = "\0") -> tuple[_Worker, int]:
    worker = _Worker(wanted)
    argv = [sys.executable, "-P", "-m", DEMO, "--guid", "g", "--port", str(port)]
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    transport = reactor.spawnProcess(worker, argv[0], argv, env=env,
                                     childFDs={0: stdin_fd, 1: "r", 2: "r"})
    return worker, transport.pid


@pytest_twisted.ensureDeferred
async def test_dev_null_exits_66_at_once_saying_where_the_config_comes_from(reactor, port):
    """/dev/null is read to its (immediate) EOF: no config, so exit 66 with the reason."""
    with open(os.devnull, "rb") as null:
        worker, _ = spawn(reactor, null.fileno(), port)
        status = await worker.ended.addTimeout(20, reactor)
    assert status.code == EXIT_NO_CONFIG
    assert any("the config must come on stdin" in line for line in worker.lines)


@pytest_twisted.ensureDeferred
async def test_a_terminal_exits_66_at_once(reactor, port):
    """A terminal on stdin: nobody will type a config; exit 66 saying so, not a hang."""
    controller, terminal = os.openpty()
    try:
        worker, _ = spawn(reactor, terminal, port)
        status = await worker.ended.addTimeout(20, reactor)
    finally:
        os.close(controller)
        os.close(terminal)
    assert status.code == EXIT_NO_CONFIG
    assert any("is a terminal: the config must come on stdin" in line for line in worker.lines)


@pytest_twisted.ensureDeferred
async def test_a_config_file_is_read_to_its_end_and_the_worker_serves(reactor, tmp_path, port):
    """A file on stdin is the config: the worker reads it to EOF and listens."""
    config = tmp_path / "g.cfg"
    config.write_text(f"[g]\nlisten_port = {port}\ngreeting = from a file\n")
    with open(config, "rb") as stream:
        worker, pid = spawn(reactor, stream.fileno(), port, wanted="listening on")
        await worker.seen.addTimeout(20, reactor)
    os.kill(pid, 15)
    status = await worker.ended.addTimeout(20, reactor)
    await wait_gone(reactor, [pid])
    assert status.code == 0
