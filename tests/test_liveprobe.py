"""
The liveness checks' own client (:class:`WireProbe`): one kept-alive
connection per job reused for every check, reopened when the worker closed
it, not read by the reactor between a check's ask and its judge moment
(when what came is taken off the socket). On a MemoryReactorClock, each
connection a StringTransport the test answers on (or one over a
socketpair, as a TCP transport gives its socket); then once through a
real worker, whose connection from the daemon is read from
``/proc/net/tcp``.
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
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
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
LATE = "no answer within 0.5s"


def answer(code: int = 200, body: bytes = b'{"status": "ok", "guid": "' + GUID.encode() + b'"}',
           close: bool = False) -> bytes:
    """An HTTP/1.1 answer of ``body``."""
    head = f"HTTP/1.1 {code} X\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


@implementer(ISystemHandle)
class SocketTransport(StringTransport):
    """A StringTransport over one end of a socketpair, as a TCP transport gives its socket."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self.sock = sock

    def getHandle(self) -> socket.socket:
        return self.sock


@attrs.define
class Rig:
    reactor: MemoryReactorClock
    probe: WireProbe
    job: Job

    def ask(self) -> None:
        self.probe.ask(self.job, "/health", 0.5)

    def judge(self) -> str | None:
        return self.probe.judge(GUID)

    def accept(self, transport: StringTransport | None = None) -> tuple[Protocol, StringTransport]:
        """Make the last connection asked for; its protocol and transport."""
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        assert (host, port) == ("127.0.0.1", 28000)
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = transport or StringTransport()
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
    r.ask()
    protocol, transport = r.accept()
    for n in range(1, 4):
        assert transport.value() == REQUEST * n
        protocol.dataReceived(answer())
        assert r.judge() is None
        r.ask()
    assert len(r.reactor.tcpClients) == 1 and r.probe.opened == 1


def test_a_connection_the_worker_closed_while_idle_is_opened_again_unfailed():
    """A kept connection closed between checks is replaced by the next check, which passes."""
    r = rig()
    r.ask()
    protocol, transport = r.accept()
    protocol.dataReceived(answer())
    assert r.judge() is None
    protocol.connectionLost(Failure(ConnectionDone()))
    r.ask()
    assert len(r.reactor.tcpClients) == 2
    again, transport = r.accept()
    assert transport.value() == REQUEST
    again.dataReceived(answer())
    assert r.judge() is None


def test_a_request_the_kept_connection_dropped_unanswered_is_sent_again_once():
    """A request on a kept connection closed before any byte of answer goes once more, anew."""
    r = rig()
    r.ask()
    protocol, _ = r.accept()
    protocol.dataReceived(answer())
    assert r.judge() is None
    r.ask()
    protocol.connectionLost(Failure(ConnectionDone()))  # the worker had closed it
    assert len(r.reactor.tcpClients) == 2
    again, transport = r.accept()
    assert transport.value() == REQUEST
    again.dataReceived(answer())
    assert r.judge() is None


def test_a_new_connection_closed_unanswered_fails_the_check():
    """On a connection of its own, a check the worker closes unanswered fails (no retry)."""
    r = rig()
    r.ask()
    protocol, _ = r.accept()
    protocol.connectionLost(Failure(ConnectionDone()))
    assert r.judge() == "GET /health failed: Unanswered"
    assert len(r.reactor.tcpClients) == 1


def test_a_check_unanswered_at_its_judge_moment_aborts_its_connection():
    """Judged unanswered, a check fails and its connection is aborted; the next reconnects."""
    r = rig()
    r.ask()
    protocol, transport = r.accept()
    assert r.judge() == LATE and transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))  # the abort, as the reactor does it
    r.ask()
    assert len(r.reactor.tcpClients) == 2
    again, _ = r.accept()
    again.dataReceived(answer())
    assert r.judge() is None


def test_a_half_answer_at_the_judge_moment_is_no_answer():
    """Part of an answer by the judge moment fails as no answer (the rest would be late)."""
    r = rig()
    r.ask()
    protocol, transport = r.accept()
    protocol.dataReceived(answer()[:20])
    assert r.judge() == LATE and transport.disconnecting


def test_a_late_answer_on_an_aborted_connection_is_not_taken_for_the_next():
    """The next check after one judged unanswered is answered on its own connection."""
    r = rig()
    r.ask()
    protocol, _ = r.accept()
    assert r.judge() == LATE
    r.ask()
    protocol.dataReceived(answer(body=b'{"guid": "' + b"b" * 32 + b'"}'))  # late, ignored
    again, _ = r.accept()
    again.dataReceived(answer())
    assert r.judge() is None and len(r.reactor.tcpClients) == 2


def test_a_connection_not_made_by_the_judge_moment_is_given_up():
    """A connection still being opened at the judge moment is cancelled; the check fails."""
    r = rig()
    r.ask()
    connector = r.reactor.connectors[-1]
    assert r.judge() == LATE
    assert connector.stoppedConnecting


def test_a_refused_connection_fails_the_check_naming_it():
    """A worker that refuses the connection fails the check with the reason, when judged."""
    r = rig()
    r.ask()
    _, _, factory, _, _ = r.reactor.tcpClients[-1]
    factory.clientConnectionFailed(r.reactor.connectors[-1],
                                   Failure(ConnectionRefusedError()))
    assert r.judge() == "GET /health failed: ConnectionRefusedError"


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
    r.ask()
    protocol, _ = r.accept()
    protocol.dataReceived(data)
    assert r.judge() == why


def test_each_answer_is_judged_even_after_one_like_it_passed():
    """The body of the last good answer passes unread again; any other body is judged anew."""
    r = rig()
    r.ask()
    protocol, _ = r.accept()
    for data, why in [(answer(), None), (answer(), None), (answer(503), "GET /health answered 503"),
                      (answer(body=b'{"guid": "' + b"b" * 32 + b'"}'),
                       "GET /health was answered by another job"), (answer(), None)]:
        protocol.dataReceived(data)
        assert r.judge() == why
        r.ask()
    assert len(r.reactor.tcpClients) == 1


def test_an_answer_nobody_asked_for_after_the_awaited_one_closes_the_connection():
    """Two answers to one request: the first is judged, the second closes the connection."""
    r = rig()
    r.ask()
    protocol, transport = r.accept()
    protocol.dataReceived(answer() + answer(503))
    assert r.judge() is None and transport.disconnecting


def test_an_answer_that_closes_its_connection_is_read_and_the_next_reconnects():
    """``Connection: close`` ends the kept connection after its answer; the next check reopens."""
    r = rig()
    r.ask()
    protocol, transport = r.accept()
    protocol.dataReceived(answer(close=True))
    assert r.judge() is None and transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))
    r.ask()
    assert len(r.reactor.tcpClients) == 2


def test_forget_closes_the_jobs_connection():
    """A job checked no more has its kept connection closed."""
    r = rig()
    r.ask()
    protocol, transport = r.accept()
    protocol.dataReceived(answer())
    r.probe.forget(GUID)
    assert transport.disconnecting


@contextlib.contextmanager
def pair():
    """A connected socketpair, the near end non-blocking as Twisted's sockets are."""
    near, far = socket.socketpair()
    with near, far:
        near.setblocking(False)
        yield near, far


def test_the_answer_waits_in_the_socket_until_the_judge_moment():
    """
    The reactor does not read a connection with a socket (it is paused once connected):
    its answer is taken off the socket, without waiting, at the judge moment.
    """
    r = rig()
    r.ask()
    with pair() as (near, far):
        _, transport = r.accept(SocketTransport(near))
        assert transport.producerState == "paused"
        assert far.recv(4096) == REQUEST
        far.sendall(answer())
        assert r.judge() is None
        r.ask()  # the next goes on it too
        assert far.recv(4096) == REQUEST and r.probe.opened == 1
        far.sendall(answer(503))
        assert r.judge() == "GET /health answered 503"


def test_a_socket_the_worker_closed_while_idle_is_seen_as_the_next_check_is_sent():
    """The end of a kept socket closed while idle is found before sending; the check reopens."""
    r = rig()
    r.ask()
    with pair() as (near, far):
        _, transport = r.accept(SocketTransport(near))
        far.recv(4096)
        far.sendall(answer())
        assert r.judge() is None
        far.shutdown(socket.SHUT_WR)  # the worker closes it while idle
        r.ask()
        assert transport.disconnecting and len(r.reactor.tcpClients) == 2
        again, _ = r.accept()
        again.dataReceived(answer())
        assert r.judge() is None


def test_a_socket_that_ends_unanswered_by_the_judge_moment_fails_the_check():
    """A kept socket found closed at the judge moment, no byte of answer come, fails the check."""
    r = rig()
    r.ask()
    with pair() as (near, far):
        _, transport = r.accept(SocketTransport(near))
        far.recv(4096)
        far.sendall(answer())
        assert r.judge() is None
        r.ask()
        far.recv(4096)
        far.shutdown(socket.SHUT_WR)  # read, then closed unanswered
        assert r.judge() == "GET /health failed: Unanswered" and transport.disconnecting


def test_a_request_the_socket_cannot_take_goes_through_the_transport():
    """A socket whose buffer is full leaves the request to the transport, from then on."""
    r = rig()
    r.ask()
    with pair() as (near, _far):
        with contextlib.suppress(BlockingIOError):
            for _ in range(1000):  # a socketpair's buffer fills long before
                near.send(b"x" * 65536)
        protocol, transport = r.accept(SocketTransport(near))
        assert transport.value() == REQUEST
        protocol.dataReceived(answer())
        assert r.judge() is None
        r.ask()
        assert transport.value() == REQUEST * 2


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
