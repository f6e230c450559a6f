"""
The liveness checks' own client (:class:`WireProbe`): one kept-alive
connection per job reused for every check, reopened when the worker closed
it, the timeout the caller's. On a MemoryReactorClock, each connection a
StringTransport the test answers on; then once through a real worker, whose
connection from the daemon is read from ``/proc/net/tcp``.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISystemHandle
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from turberfield_twisted.jobs.job import Job, JobState
from turberfield_twisted.jobs.liveprobe import GUID_LIMIT, WireProbe
from turberfield_twisted.testing import running_initiator
from turberfield_twisted.testing.fakes import FakeWorker

GUID = "a" * 32
REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:28000\r\n\r\n"


def answer(code: int = 200, body: bytes = b'{"status": "ok", "guid": "' + GUID.encode() + b'"}',
           close: bool = False) -> bytes:
    """An HTTP/1.1 answer of ``body``."""
    head = f"HTTP/1.1 {code} X\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


@attrs.define
class Rig:
    reactor: MemoryReactorClock
    probe: WireProbe
    job: Job
    results: list[str | None] = attrs.field(factory=list)

    def check(self, timeout: float = 0.5) -> Deferred[str | None]:
        d = self.probe.check(self.job, "/health", timeout).addTimeout(timeout, self.reactor)
        d.addCallback(self.results.append)
        return d

    def accept(self) -> tuple[Protocol, StringTransport]:
        """Make the last connection asked for; its protocol and transport."""
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        assert (host, port) == ("127.0.0.1", 28000)
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport


def rig() -> Rig:
    reactor = MemoryReactorClock()
    process = FakeWorker("m", GUID, 28000, b"", lambda stream, text: None)
    job = Job(guid=GUID, port=28000, session=None, module="m", process=process,
              state=JobState.READY)
    return Rig(reactor, WireProbe(reactor), job)


def test_every_check_goes_on_the_one_kept_connection():
    """A job's checks reuse one kept-alive connection, each the same request bytes."""
    r = rig()
    r.check()
    protocol, transport = r.accept()
    for n in range(1, 4):
        assert transport.value() == REQUEST * n
        protocol.dataReceived(answer())
        assert r.results == [None] * n
        r.check()
    assert len(r.reactor.tcpClients) == 1 and r.probe.opened == 1


def test_a_connection_the_worker_closed_while_idle_is_opened_again_unfailed():
    """A kept connection closed between checks is replaced by the next check, which passes."""
    r = rig()
    r.check()
    protocol, transport = r.accept()
    protocol.dataReceived(answer())
    protocol.connectionLost(Failure(ConnectionDone()))
    r.check()
    assert len(r.reactor.tcpClients) == 2
    again, transport = r.accept()
    assert transport.value() == REQUEST
    again.dataReceived(answer())
    assert r.results == [None, None]


def test_a_request_the_kept_connection_dropped_unanswered_is_sent_again_once():
    """A request on a kept connection closed before any byte of answer goes once more, anew."""
    r = rig()
    r.check()
    protocol, _ = r.accept()
    protocol.dataReceived(answer())
    r.check()
    protocol.connectionLost(Failure(ConnectionDone()))  # the worker had closed it
    assert r.results == [None] and len(r.reactor.tcpClients) == 2
    again, transport = r.accept()
    assert transport.value() == REQUEST
    again.dataReceived(answer())
    assert r.results == [None, None]


def test_a_new_connection_closed_unanswered_fails_the_check():
    """On a connection of its own, a check the worker closes unanswered fails (no retry)."""
    r = rig()
    r.check()
    protocol, _ = r.accept()
    protocol.connectionLost(Failure(ConnectionDone()))
    assert r.results == ["GET /health failed: Unanswered"]
    assert len(r.reactor.tcpClients) == 1


def test_a_check_past_its_timeout_aborts_its_connection_and_the_next_opens_one():
    """The caller's timeout cancels the check and aborts its connection; the next reconnects."""
    r = rig()
    failed: list[Failure] = []
    r.check().addErrback(failed.append)
    protocol, transport = r.accept()
    r.reactor.advance(0.5)
    assert failed and failed[0].check(TimeoutError) and transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))  # the abort, as the reactor does it
    r.check()
    assert len(r.reactor.tcpClients) == 2
    again, _ = r.accept()
    again.dataReceived(answer())
    assert r.results == [None]


def test_a_late_answer_on_an_aborted_connection_is_not_taken_for_the_next():
    """The next check after a timeout is answered on its own connection, not the late one."""
    r = rig()
    r.check().addErrback(lambda _: None)
    protocol, _ = r.accept()
    r.reactor.advance(0.5)
    r.check()
    protocol.dataReceived(answer(body=b'{"guid": "' + b"b" * 32 + b'"}'))  # late, ignored
    again, _ = r.accept()
    again.dataReceived(answer())
    assert r.results == [None] and len(r.reactor.tcpClients) == 2


@pytest.mark.parametrize(("data", "why"), [
    (answer(503), "GET /health answered 503"),
    (answer(body=b'{"guid": "' + b"b" * 32 + b'"}'), "GET /health was answered by another job"),
    (answer(body=b"ok, guid: none"), None),
    (answer(body=b'{"guid": "' + b"b" * 32 + b'"' + b" " * GUID_LIMIT + b"}"), None),
    (b"SSH-2.0-OpenSSH\r\n", "GET /health failed: WireError"),
])
def test_an_answer_is_judged_by_its_status_and_a_small_json_bodys_guid(data, why):
    """200 passes unless a small JSON body names another guid; a non-HTTP answer fails."""
    r = rig()
    r.check()
    protocol, _ = r.accept()
    protocol.dataReceived(data)
    assert r.results == [why]


def test_an_answer_that_closes_its_connection_is_read_and_the_next_reconnects():
    """``Connection: close`` ends the kept connection after its answer; the next check reopens."""
    r = rig()
    r.check()
    protocol, transport = r.accept()
    protocol.dataReceived(answer(close=True))
    assert r.results == [None] and transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))
    r.check()
    assert len(r.reactor.tcpClients) == 2


def test_forget_closes_the_jobs_connection():
    """A job checked no more has its kept connection closed."""
    r = rig()
    r.check()
    protocol, transport = r.accept()
    protocol.dataReceived(answer())
    r.probe.forget(GUID)
    assert transport.disconnecting


@implementer(ISystemHandle)
class SocketTransport(StringTransport):
    """A StringTransport over one end of a socketpair, as a TCP transport gives its socket."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self.sock = sock

    def getHandle(self) -> socket.socket:
        return self.sock


def test_a_request_the_socket_takes_whole_is_sent_at_once():
    """On an idle connection the request goes on the socket itself, not the transport's buffer."""
    r = rig()
    r.check()
    host, port, factory, _, _ = r.reactor.tcpClients[-1]
    near, far = socket.socketpair()
    with near, far:
        near.setblocking(False)
        transport = SocketTransport(near)
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        assert far.recv(4096) == REQUEST and transport.value() == b""
        protocol.dataReceived(answer())
        assert r.results == [None]


def test_a_request_the_socket_cannot_take_goes_through_the_transport():
    """A socket whose buffer is full leaves the request to the transport, from then on."""
    r = rig()
    r.check()
    host, port, factory, _, _ = r.reactor.tcpClients[-1]
    near, far = socket.socketpair()
    with near, far:
        near.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            for _ in range(1000):  # a socketpair's buffer fills long before
                near.send(b"x" * 65536)
        transport = SocketTransport(near)
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        assert transport.value() == REQUEST
        protocol.dataReceived(answer())
        r.check()
        assert transport.value() == REQUEST * 2 and r.results == [None]


def _connections_to(port: int) -> set[int]:
    """The local ports of this process's established loopback TCP connections to ``port``."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    local = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and inode in inodes and remote == f"0100007F:{port:04X}":
            local.add(int(fields[1].split(":")[1], 16))
    return local


@pytest_twisted.ensureDeferred
async def test_the_daemon_holds_one_connection_per_job_across_its_checks(reactor: Any):
    """A real worker's checks all go on one connection from the daemon, kept across checks."""
    live = {"live_interval": 0.5, "live_timeout": 0.4, "live_failures": 3, "block_after": 0}
    async with running_initiator({"turberfield_twisted.testing.stuck": live},
                                 stop_timeout=1) as running:
        init = running.init
        worker = await running.launch("turberfield_twisted.testing.stuck")
        job = init.job(worker.guid)
        await init.upkeep.liveness.passed(job.guid, 2).addTimeout(60, reactor)
        first = _connections_to(job.port)
        await init.upkeep.liveness.passed(job.guid, 8).addTimeout(60, reactor)
        assert len(first) == 1 and _connections_to(job.port) == first
        assert init.upkeep.liveness.failure(job.guid) is None
