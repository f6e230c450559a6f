"""
HTTP/1.1 answers read straight off the wire (httptools): each framing an answer
may have, interim answers, HEAD, bytes past the end; and the one-shot health GET
against real loopback servers (an answer, a refusal, silence, not HTTP).
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol

from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.worker.wire import HealthGet, ResponseReader, WireError


class Heard:
    """A sink that notes what it is told."""

    def __init__(self) -> None:
        self.heads: list[tuple[int, list[tuple[bytes, bytes]], int | None]] = []
        self.pieces: list[bytes] = []
        self.ends: list[bool] = []

    def head(self, status: int, headers: list[tuple[bytes, bytes]], length: int | None) -> None:
        self.heads.append((status, headers, length))

    def body(self, data: bytes) -> None:
        self.pieces.append(data)

    def end(self, reusable: bool) -> None:
        self.ends.append(reusable)


def read(*chunks: bytes, head_only: bool = False, eof: bool = False) -> tuple[Heard, Any]:
    heard = Heard()
    reader = ResponseReader(heard)
    reader.expect(head_only)
    for chunk in chunks:
        reader.feed(chunk)
    if eof:
        reader.eof()
    return heard, reader


def test_a_sized_answer_fed_a_byte_at_a_time():
    """Content-Length framing, however the bytes come: head, body, end; reusable."""
    answer = b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    heard, _ = read(*(answer[i:i + 1] for i in range(len(answer))))
    assert heard.heads == [(201, [(b"Content-Type", b"text/plain"),
                                  (b"Content-Length", b"5")], 5)]
    assert b"".join(heard.pieces) == b"hello" and heard.ends == [True]


def test_a_chunked_answer_comes_dechunked_with_no_length():
    """Chunked framing: the body's pieces without their framing; length None."""
    heard, _ = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert heard.heads[0][2] is None
    assert b"".join(heard.pieces) == b"abcde" and heard.ends == [True]


def test_an_answer_to_eof_ends_with_the_connection_and_is_not_reusable():
    """No length, not chunked: the body runs to EOF; the connection can't be used again."""
    heard, reader = read(b"HTTP/1.1 200 OK\r\n\r\npart ", b"two")
    assert heard.ends == []
    reader.eof()
    assert b"".join(heard.pieces) == b"part two" and heard.ends == [False]


def test_interim_answers_are_skipped():
    """A 100 Continue before the answer is not an answer."""
    heard, _ = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert [status for status, _, _ in heard.heads] == [204] and heard.ends == [True]


def test_the_answer_to_a_head_ends_with_its_head():
    """HEAD: a Content-Length but no body; it ends at its head, the connection not reused."""
    heard, _ = read(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", head_only=True)
    assert heard.heads[0][2] == 50 and heard.pieces == [] and heard.ends == [False]


def test_bytes_after_the_end_mark_the_connection_spoilt():
    """Another answer nobody asked for, after the end: ``extra``, not reusable; one asked
    for (after ``expect``) is the next answer on a reusable connection."""
    heard, reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    reader.expect()
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert not reader.extra and heard.ends == [True, True]
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
    assert reader.extra and heard.ends == [True, True, False]


def test_a_cut_answer_and_garbage_are_wire_errors():
    """EOF inside a sized body, or bytes that are not HTTP: WireError."""
    _, reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort")
    with pytest.raises(WireError):
        reader.eof()
    with pytest.raises(WireError):
        read(b"SSH-2.0-OpenSSH\r\n\r\n")


class Canned(Protocol):
    """Answer whatever is asked with ``factory.answer`` (None: say nothing), then close."""

    factory: Any

    def connectionMade(self) -> None:
        self.factory.connections += 1

    def dataReceived(self, data: bytes) -> None:
        self.factory.asked.append(data)
        if self.factory.answer is not None:
            self.transport.write(self.factory.answer)
            self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.lost.callback(None)


@pytest_twisted.async_yield_fixture
async def canned(reactor: Any) -> Any:
    """``serve(answer)``: a loopback server answering ``answer``; its factory (and port)."""
    ports: list[Any] = []

    async def serve(answer: bytes | None) -> Any:
        factory = Factory.forProtocol(Canned)
        factory.answer, factory.asked, factory.connections = answer, [], 0
        factory.lost = Deferred()
        port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory)
        ports.append(port)
        factory.url = f"http://127.0.0.1:{port.getHost().port}/health"
        return factory

    yield serve
    for port in ports:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_health_get_reads_the_answer_whole(canned, reactor):
    """One GET /health on its own connection (Connection: close); the answer's code and body."""
    server = await canned(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 16\r\n\r\n{\"status\": \"ok\"}")
    answer = await HealthGet(reactor).get(server.url, timeout=5, reactor=reactor)
    assert (answer.code, await answer.content()) == (200, b'{"status": "ok"}')
    [asked] = server.asked
    assert asked.startswith(b"GET /health HTTP/1.1\r\n") and b"Connection: close" in asked
    await server.lost.addTimeout(5, reactor)


@pytest_twisted.ensureDeferred
async def test_a_health_get_fails_on_refusal_silence_and_garbage(canned, reactor):
    """Nobody there: refused; a listener that says nothing: timed out (and hung up on);
    one that is not HTTP: WireError; an answer over the limit: WireError."""
    with free_ports(10) as held:
        with pytest.raises(ConnectionRefusedError):
            await HealthGet(reactor).get(f"http://127.0.0.1:{held.low}/health", timeout=5)
    silent = await canned(None)
    with pytest.raises(DeferredTimeout):
        await HealthGet(reactor).get(silent.url, timeout=0.2)
    await silent.lost.addTimeout(5, reactor)
    noise = await canned(b"this is not HTTP at all\r\n\r\n")
    with pytest.raises(WireError):
        await HealthGet(reactor).get(noise.url, timeout=5)
    big = await canned(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)
    with pytest.raises(WireError, match="over"):
        await HealthGet(reactor, limit=1000).get(big.url, timeout=5)
