"""
The control API's router end to end: a real daemon answers paths as the
werkzeug-routed one did, a long-poll stops waiting when its client goes
away, and a proactord daemon never loads Klein or werkzeug.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from turberfield_twisted.cli.locate import read_api

DEMO = "turberfield_twisted.demo.hello"
NOT_FOUND = {"error": "not found"}
NOT_ALLOWED = {"error": "method not allowed"}
NO_JOB_X = {"error": "no job 'x'"}
NOT_UTF8 = {"error": "the URL is not UTF-8"}

#: What the daemon answered when werkzeug routed it (measured on the proactord
#: branch): method, raw path -> status, JSON body (None: not checked), Allow.
ANSWERS: list[tuple[bytes, bytes, int, Any, str | None]] = [
    (b"GET", b"/jobs", 200, {"jobs": []}, None),
    (b"GET", b"//jobs", 200, {"jobs": []}, None),
    (b"GET", b"///jobs", 200, {"jobs": []}, None),
    (b"GET", b"/%6Aobs", 200, {"jobs": []}, None),
    (b"GET", b"/jobs?x=%ff", 200, {"jobs": []}, None),
    (b"GET", b"/jobs/", 404, NOT_FOUND, None),
    (b"GET", b"/jobs//x", 404, NOT_FOUND, None),
    (b"GET", b"/jobs/x", 404, NO_JOB_X, None),
    (b"GET", b"/jobs/%78", 404, NO_JOB_X, None),
    (b"GET", b"/jobs/x/", 404, NOT_FOUND, None),
    (b"GET", b"/jobs/x%2F", 404, NOT_FOUND, None),
    (b"GET", b"/jobs/a%2Fb", 404, NOT_FOUND, None),
    (b"GET", b"/jobs/a%20b", 404, {"error": "no job 'a b'"}, None),
    (b"GET", b"/jobs/%2e%2e", 404, {"error": "no job '..'"}, None),
    (b"GET", b"/jobs/%ff", 400, NOT_UTF8, None),
    (b"GET", b"/hooks/%ff", 400, NOT_UTF8, None),
    (b"GET", b"/ui/%ff", 400, NOT_UTF8, None),
    (b"PUT", b"/jobs", 405, NOT_ALLOWED, "GET, HEAD, POST"),
    (b"OPTIONS", b"/jobs", 405, NOT_ALLOWED, "GET, HEAD, POST"),
    (b"FOO", b"/jobs", 405, NOT_ALLOWED, "GET, HEAD, POST"),
    (b"PUT", b"/jobs//x", 405, NOT_ALLOWED, "DELETE, GET, HEAD"),
    (b"GET", b"/jobs/x//restart", 405, NOT_ALLOWED, "POST"),
    (b"POST", b"/jobs/x//restart", 404, NOT_FOUND, None),
    (b"POST", b"//health", 405, NOT_ALLOWED, "GET, HEAD"),
    (b"HEAD", b"/health", 200, None, None),
    (b"HEAD", b"/jobs/x/restart", 405, None, "POST"),
    (b"HEAD", b"/nope", 404, None, None),
    (b"GET", b"/health/", 404, NOT_FOUND, None),
    (b"GET", b"/nope", 404, NOT_FOUND, None),
    (b"GET", b"/", 302, None, None),
    (b"GET", b"///", 302, None, None),
    (b"GET", b"/ui", 302, None, None),
    (b"POST", b"/ui", 405, NOT_ALLOWED, "GET, HEAD"),
    (b"GET", b"/ui/", 200, None, None),
    (b"POST", b"/ui/", 405, NOT_ALLOWED, "GET, HEAD"),
    (b"GET", b"/ui//", 404, NOT_FOUND, None),
    (b"GET", b"/hooks", 200, {"hooks": []}, None),
    (b"GET", b"/hooks/", 404, NOT_FOUND, None),
    (b"GET", b"/hooks/x", 405, NOT_ALLOWED, "DELETE"),
    (b"DELETE", b"/hooks/x", 404, {"error": "no hook 'x'"}, None),
    (b"DELETE", b"/hooks//x", 404, NOT_FOUND, None),
    (b"GET", b"/services", 200, {"services": []}, None),
    (b"GET", b"/services/", 404, NOT_FOUND, None),
    (b"GET", b"/services/x/", 404, NOT_FOUND, None),
    (b"PUT", b"/services/x", 405, NOT_ALLOWED, "DELETE, GET, HEAD, PATCH"),
    (b"GET", b"/tokens", 200, {"tokens": []}, None),
    (b"POST", b"/tokens/admin//rotate", 404, NOT_FOUND, None),
    (b"GET", b"/logs", 404, NOT_FOUND, None),
    (b"GET", b"/logs/reopen", 405, NOT_ALLOWED, "POST"),
    (b"GET", b"/jobs/x/proxy", 404, NO_JOB_X, None),
    (b"GET", b"/jobs//proxy/", 404, NOT_FOUND, None),
    (b"GET", b"/slurm", 404, NOT_FOUND, None),
    (b"GET", b"/openapi.json/", 404, NOT_FOUND, None),
]


class _Raw(Protocol):
    """
    Sends one raw request; ``heard`` fires once the answer holds ``until``,
    ``answer`` with all the server sent once the connection closes.
    """

    def __init__(self, request: bytes, until: bytes = b"\r\n\r\n"):
        self.request = request
        self.until = until
        self.received = b""
        self.heard: Deferred[None] = Deferred()
        self.answer: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.until in self.received and not self.heard.called:
            self.heard.callback(None)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.answer.callback(self.received)


def _request(method: bytes, path: bytes, token: str, close: bool = True) -> bytes:
    return (method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + token.encode() + (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n")


async def _connect(reactor: Any, url: str, request: bytes, until: bytes = b"\r\n\r\n"
                   ) -> _Raw:
    port = int(url.rsplit(":", 1)[1].strip("/"))
    raw = _Raw(request, until)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10), raw)
    return raw


def _parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        chunks, rest = [], body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            if int(size, 16) == 0:
                break
            chunks.append(rest[:int(size, 16)])
            rest = rest[int(size, 16) + 2:]
        body = b"".join(chunks)
    return int(lines[0].split(" ")[1]), headers, body


@pytest_twisted.ensureDeferred
async def test_paths_answer_as_the_werkzeug_routed_daemon_did(reactor: Any, daemons: Any) -> None:
    """Every status, JSON body and Allow of the table is the one the daemon gave with werkzeug."""
    daemon = await daemons()
    differ = []
    for method, path, status, body, allow in ANSWERS:
        raw = await _connect(reactor, daemon.url, _request(method, path, daemon.token))
        got_status, headers, got_body = _parse(await raw.answer.addTimeout(20, reactor))
        allowed = headers.get("allow")  # werkzeug's order was a set's: compared as sets
        got = (got_status, json.loads(got_body) if body is not None else None,
               None if allowed is None else ", ".join(sorted(allowed.split(", "))))
        if got != (status, body, allow):
            differ.append((method, path, got))
    assert differ == []


@pytest_twisted.ensureDeferred
async def test_a_long_poll_stops_waiting_when_its_client_goes_away(
        reactor: Any, tmp_path: Path, take_ports: Any, monkeypatch: Any) -> None:
    """``GET /jobs/{guid}?wait=``: a client that hangs up cancels the wait in the daemon."""
    from test_openapi import daemon_in_process

    ports = take_ports(5)
    config = (f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low}\n"
              f"child_port_max = {ports.high}\n\n[{DEMO}]\ngreeting = hi\n")
    async with daemon_in_process(reactor, tmp_path, config) as initiator:
        url, token = read_api(tmp_path / "state")
        guid = await initiator.launch(DEMO)
        await initiator.ready(guid, timeout=15)
        entered: Deferred[list[Deferred[Any]]] = Deferred()
        waiting = initiator.wait_for_state

        def wait_for_state(*args: Any, **kwargs: Any) -> Deferred[Any]:
            d = waiting(*args, **kwargs)
            if not entered.called:  # (stopping the job waits too)
                entered.callback([d])  # (a Deferred can't be a Deferred's result)
            return d

        monkeypatch.setattr(initiator, "wait_for_state", wait_for_state)
        raw = await _connect(reactor, url, _request(
            b"GET", f"/jobs/{guid}?wait=exited&timeout=60".encode(), token, close=False))
        [wait] = await entered.addTimeout(10, reactor)
        assert not wait.called
        raw.transport.abortConnection()
        outcome: Deferred[list[Failure]] = Deferred()
        wait.addErrback(lambda failure: outcome.callback([failure]))
        [failure] = await outcome.addTimeout(10, reactor)  # not the 60 s asked
        assert failure.check(CancelledError)
        await initiator.stop(guid)


@pytest_twisted.ensureDeferred
async def test_a_proactord_daemon_never_loads_klein_or_werkzeug(reactor: Any,
                                                                daemons: Any) -> None:
    """
    After a launch, a long-poll, a relayed request and an event stream, the daemon's
    process has not mapped markupsafe's C speedups, which werkzeug imports.
    """
    daemon = await daemons()
    code, job = await daemon.call(reactor, "POST", "/jobs", {"module": DEMO, "guid": "seen"})
    assert code == 201, job
    code, job = await daemon.call(reactor, "GET", "/jobs/seen?wait=ready&timeout=30")
    assert (code, job["state"]) == (200, "ready")
    code, answer = await daemon.call(reactor, "GET", "/jobs/seen/proxy/")
    assert (code, answer["guid"]) == (200, "seen")
    raw = await _connect(reactor, daemon.url, _request(b"GET", b"/events", daemon.token),
                         until=b"event: open")
    await raw.heard.addTimeout(10, reactor)
    raw.transport.loseConnection()
    await raw.answer.addTimeout(10, reactor)
    assert (await daemon.call(reactor, "GET", "/health"))[0] == 200
    maps = Path(f"/proc/{daemon.pid}/maps").read_text()
    assert "markupsafe" not in maps and "klein" not in maps and "werkzeug" not in maps
    assert (await daemon.call(reactor, "DELETE", "/jobs/seen"))[0] == 202
