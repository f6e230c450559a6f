"""
The worker runtime's side of services, through real processes started by
the local launcher: a worker handed a listening socket (systemd's socket
activation) serves it beside its own port, and on SIGTERM drains: idle
keep-alive connections are closed, a request in flight is answered with
``Connection: close``, and connections still queued on the socket are left
for another worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed

from turberfield_twisted.contract import LISTEN_FDNAMES_ENV, LISTEN_FDS_ENV, LISTEN_PID_ENV
from turberfield_twisted.launch.interfaces import ListenSocket
from turberfield_twisted.launch.local import LocalLauncher, socket_fds
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import wait_gone

HELD = "turberfield_twisted.testing.held"


def _config(guid: str, port: int) -> bytes:
    return f"[DEFAULT]\n[{guid}]\nlisten_port = {port}\n".encode()


class _Lines:
    """A worker's output lines, and a way to wait for one that holds some text."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._waiting: list[tuple[str, Deferred[str]]] = []

    def __call__(self, stream: str, text: str) -> None:
        self.lines.append(text)
        for item in list(self._waiting):
            if item[0] in text:
                self._waiting.remove(item)
                item[1].callback(text)

    def wait(self, text: str, reactor: Any) -> Deferred[str]:
        for line in self.lines:
            if text in line:
                return succeed(line)
        d: Deferred[str] = Deferred()
        self._waiting.append((text, d))
        return d.addTimeout(20, reactor)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   path: str = "/") -> tuple[int, dict[str, str], bytes]:
    """One GET on an open connection: status, headers (lower case), body."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return await _answer(reader)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """The next answer on a connection: status, headers (lower case), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") != "chunked":
        return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        body += (await reader.readexactly(size + 2))[:-2]
        if not size:
            return status, headers, body


def _wait(coro: Any, reactor: Any, timeout: float = 20) -> Deferred[Any]:
    return Deferred.fromFuture(asyncio.ensure_future(coro)).addTimeout(timeout, reactor)


@pytest.fixture
def ports() -> Any:
    held = free_ports(10)
    yield held
    held.release()


@pytest.fixture
def shared(ports: Any) -> Any:
    """A listening socket, as the daemon binds a service's address."""
    sock = socket.create_server(("127.0.0.1", ports.low), backlog=128)
    yield sock
    sock.close()


def test_socket_fds_put_the_sockets_first_and_the_lifeline_and_ready_fd_after():
    """A service instance's fds: sockets from 3, then its lifeline and ready fd."""
    fds = socket_fds([ListenSocket("web", 17)])
    assert fds == {0: "w", 1: "r", 2: "r", 3: 17, 4: "w", 5: "r"}
    assert socket_fds([]) == {0: "w", 1: "r", 2: "r", 3: "w", 4: "r"}


@pytest_twisted.ensureDeferred
async def test_a_worker_handed_a_socket_serves_it_beside_its_own_port(reactor, ports, shared):
    """
    The runtime takes the socket at fd 3 (LISTEN_FDS, LISTEN_PID its own pid) and serves
    both it and its own port; it says it is ready on its ready fd, after the socket.
    """
    launcher = LocalLauncher(reactor)
    lines = _Lines()
    own = ports.low + 1
    process = launcher.spawn(HELD, "w1", own, _config("w1", own), lines,
                             sockets=[ListenSocket("web", shared.fileno())])
    try:
        await process.listening().addTimeout(20, reactor)
        for port in (ports.low, own):
            reader, writer = await _wait(asyncio.open_connection("127.0.0.1", port), reactor)
            status, _, body = await _wait(_request(reader, writer), reactor)
            writer.close()
            assert (status, body) == (200, b"w1")
        with open(f"/proc/{process.pid}/environ", "rb") as f:
            environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if item)
        assert environ[LISTEN_FDS_ENV.encode()] == b"1"
        assert environ[LISTEN_PID_ENV.encode()] == str(process.pid).encode()
        assert environ[LISTEN_FDNAMES_ENV.encode()] == b"web"
    finally:
        pid = process.pid
        process.signal(signal.SIGTERM)
        status = await process.exited().addTimeout(20, reactor)
        await wait_gone(reactor, [pid] if pid else [])
    assert status.code == 0


@pytest_twisted.ensureDeferred
async def test_sigterm_drains_and_leaves_queued_connections_to_another_worker(
        reactor, ports, shared):
    """
    On SIGTERM a worker closes its idle keep-alive connections, answers the request it
    holds with Connection: close, and exits 0; a connection queued on the shared socket
    meanwhile is answered by the next worker to take the socket.
    """
    launcher = LocalLauncher(reactor)
    lines = _Lines()
    sock = [ListenSocket("web", shared.fileno())]
    first = launcher.spawn(HELD, "w1", ports.low + 1, _config("w1", ports.low + 1), lines,
                           sockets=sock)
    second = None
    try:
        await first.listening().addTimeout(20, reactor)
        # An idle keep-alive connection, answered once.
        idle_r, idle_w = await _wait(asyncio.open_connection("127.0.0.1", ports.low), reactor)
        assert (await _wait(_request(idle_r, idle_w), reactor))[0] == 200
        # A request in flight.
        held_r, held_w = await _wait(asyncio.open_connection("127.0.0.1", ports.low), reactor)
        answer = _wait(_request(held_r, held_w, "/hold"), reactor)
        await lines.wait("held 1", reactor)
        first.signal(signal.SIGTERM)
        await lines.wait("draining", reactor)
        assert await _wait(idle_r.read(), reactor) == b""  # closed, with nothing sent
        # Queued on the shared socket, which no worker listens on now.
        queued_r, queued_w = await _wait(asyncio.open_connection("127.0.0.1", ports.low),
                                         reactor)
        queued_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        os.kill(first.pid, signal.SIGUSR1)
        status, headers, body = await answer
        assert (status, body, headers.get("connection")) == (200, b"w1", "close")
        assert await _wait(held_r.read(), reactor) == b""
        assert (await first.exited().addTimeout(20, reactor)).code == 0
        second = launcher.spawn(HELD, "w2", ports.low + 2, _config("w2", ports.low + 2), lines,
                                sockets=sock)
        status, _, body = await _wait(_answer(queued_r), reactor)
        assert (status, body) == (200, b"w2")
        for writer in (idle_w, held_w, queued_w):
            writer.close()
    finally:
        for process in (first, second):
            if process is not None and process.pid is not None:
                pid = process.pid
                process.signal(signal.SIGKILL)
                await process.exited().addTimeout(20, reactor)
                await wait_gone(reactor, [pid])


@pytest_twisted.ensureDeferred
async def test_a_warm_worker_gets_the_socket_with_its_other_fds(reactor, ports, shared):
    """
    A worker forked by a warm template is handed the socket over the template's socket
    with its other fds, and serves it as a cold one does; renew() starts a new template.
    """
    from turberfield_twisted.launch.warm.launcher import WarmLauncher
    from turberfield_twisted.launch.warm.process import WarmProcess
    from turberfield_twisted.launch.warm.states import TemplateState

    launcher = WarmLauncher(reactor, LocalLauncher(reactor), lambda module: True)
    launcher.prepare([HELD])
    template = launcher.templates[HELD]
    process = None
    try:
        assert await template.settled().addTimeout(30, reactor) is TemplateState.READY
        own = ports.low + 1
        process = launcher.spawn(HELD, "w1", own, _config("w1", own), _Lines(),
                                 sockets=[ListenSocket("web", shared.fileno())])
        assert isinstance(process, WarmProcess)
        await process.listening().addTimeout(20, reactor)
        reader, writer = await _wait(asyncio.open_connection("127.0.0.1", ports.low), reactor)
        status, _, body = await _wait(_request(reader, writer), reactor)
        writer.close()
        assert (status, body) == (200, b"w1")
        await launcher.renew(HELD).addTimeout(30, reactor)
        assert launcher.templates[HELD] is not template
        assert launcher.templates[HELD].state is TemplateState.READY
        assert template.state is TemplateState.RETIRED
        process.signal(signal.SIGTERM)
        assert (await process.exited().addTimeout(20, reactor)).code == 0
    finally:
        if process is not None and process.pid is not None:
            process.signal(signal.SIGKILL)
        await launcher.close().addTimeout(30, reactor)
