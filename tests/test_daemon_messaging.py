"""Messaging through a real daemon: web-hooks, worker events, live config, the CLI."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.server import Site

from turberfield_twisted.cli.client import ControlClient, ServerEvent
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.subscriber import Subscriber
from turberfield_twisted.worker.parent import make_http

DEMO = "turberfield_twisted.demo.hello"
PROACTOR = str(Path(sys.executable).parent / "proactor")


@pytest_twisted.async_fixture
async def daemon(daemons: Any) -> Any:
    """A running daemon on a free loopback port (stopped by ``daemons`` after)."""
    return await daemons(size=50)


async def call(reactor: Any, daemon: Daemon, method: str, path: str, body: Any = None) -> Any:
    import treq

    data = json.dumps(body).encode() if body is not None else None
    response = await treq.request(method, daemon.url + path, headers=daemon.headers(),
                                  data=data, timeout=60, reactor=reactor)
    content = await response.content()
    return response.code, json.loads(content) if content else None


async def serve(reactor: Any, subscriber: Subscriber, port: int) -> Any:
    endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
    return await endpoint.listen(Site(subscriber.app.resource()))


@pytest_twisted.ensureDeferred
async def test_subscriber_gets_a_jobs_states_and_events_in_order_signed(daemon, reactor,
                                                                         take_ports):
    """A hook on "*" gets starting, ready, the worker's event, stopping, exited: signed."""
    subscriber = Subscriber()
    listening = await serve(reactor, subscriber, take_ports(1).low)
    try:
        url = f"http://127.0.0.1:{listening.getHost().port}/hook"
        code, hook = await call(reactor, daemon, "POST", "/hooks", {"url": url, "events": ["*"]})
        assert code == 201 and hook["secret"]
        code, listed = await call(reactor, daemon, "GET", "/hooks")
        assert hook["secret"] not in json.dumps(listed)

        code, job = await call(reactor, daemon, "POST", "/jobs", {"module": DEMO})
        guid = job["guid"]
        # A change made while the job starts reaches it once it is ready.
        code, _ = await call(reactor, daemon, "PATCH", f"/jobs/{guid}/config",
                             {"greeting": "bonjour"})
        assert code == 200
        code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=ready&timeout=30")
        assert job["state"] == "ready"
        code, seen = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
        assert (code, seen["config"]["greeting"]) == (200, "bonjour")
        # The worker posts an event to the daemon, which hands it to the hook.
        code, answer = await call(reactor, daemon, "POST", f"/jobs/{guid}/proxy/notify", {"n": 7})
        assert code == 202, answer
        code, _ = await call(reactor, daemon, "DELETE", f"/jobs/{guid}")
        await subscriber.arrived(6).addTimeout(30, reactor)
        bodies = [json.loads(body) for body, _ in subscriber.received]
        assert [(b["guid"], b["event"]) for b in bodies] == [
            (guid, "waiting"), (guid, "starting"), (guid, "ready"), (guid, "notified"),
            (guid, "stopping"), (guid, "exited")]
        assert bodies[3]["data"] == {"n": 7}
        assert [b["seq"] for b in bodies] == [1, 2, 3, 4, 5, 6]
        assert subscriber.all_signed(hook["secret"])
    finally:
        await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_events_wait_for_a_subscriber_that_was_down(daemon, reactor, take_ports):
    """With the subscriber down, events queue; once it is back they arrive in order."""
    subscriber = Subscriber()
    port = take_ports(1).low  # held while the subscriber is down too
    listening = await serve(reactor, subscriber, port)
    url = f"http://127.0.0.1:{port}/hook"
    code, hook = await call(reactor, daemon, "POST", "/hooks",
                            {"url": url, "events": ["ready", "exited"]})
    assert code == 201
    await listening.stopListening()
    code, job = await call(reactor, daemon, "POST", "/jobs", {"module": DEMO})
    guid = job["guid"]
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=ready&timeout=30")
    await call(reactor, daemon, "DELETE", f"/jobs/{guid}")
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=exited&timeout=30")
    assert job["state"] == "exited"
    code, hooks = await call(reactor, daemon, "GET", "/hooks")
    [listed] = hooks["hooks"]
    assert listed["queued"] == 2 and listed["delivered"] == 0
    assert subscriber.received == []
    listening = await serve(reactor, subscriber, port)
    try:
        await subscriber.arrived(2).addTimeout(60, reactor)
        assert [e for _, e in subscriber.events()] == ["ready", "exited"]
        assert subscriber.all_signed(hook["secret"])
    finally:
        await listening.stopListening()


async def cli(reactor: Any, daemon: Daemon, *args: str, token_file: Path | None = None
              ) -> tuple[int, str, str]:
    argv = ["--state-dir", str(daemon.state_dir)]
    if token_file is not None:
        argv += ["--token-file", str(token_file)]
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    out, err, code = await getProcessOutputAndValue(PROACTOR, [*argv, *args], env=env,
                                                    reactor=reactor)
    return code, out.decode(), err.decode()


@pytest_twisted.ensureDeferred
async def test_cli_against_a_real_daemon(daemon, reactor, tmp_path):
    """launch --wait, ls, send, logs, stop: exit 0; a wrong token: one line, exit 1."""
    code, out, err = await cli(reactor, daemon, "launch", DEMO, "--session", "cli",
                               "--set", "greeting=hej", "--wait")
    assert code == 0, err
    guid = out.strip()
    code, out, err = await cli(reactor, daemon, "ls")
    assert code == 0 and guid[:12] in out and "ready" in out
    code, out, err = await cli(reactor, daemon, "send", guid, "POST", "/echo",
                               "--json", '{"a": 1}')
    assert (code, json.loads(out)["echo"]) == (0, {"a": 1}), err
    code, out, err = await cli(reactor, daemon, "logs", guid)
    assert code == 0 and f"job {guid} listening" in out
    code, out, err = await cli(reactor, daemon, "stop", guid)
    assert (code, out.split()) == (0, [guid, "stopping"])
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    code, out, err = await cli(reactor, daemon, "ls", token_file=wrong)
    assert code == 1
    [line] = err.splitlines()
    assert line.startswith("proactor: error: unauthorized (HTTP 401): the daemon at")
    assert f"refused the token in {wrong} " in line
    assert "not-the-token" not in out + err


@pytest_twisted.ensureDeferred
async def test_a_live_change_the_worker_refuses_is_undone_whole(daemon, reactor):
    """
    PATCH a greeting the demo's on_config refuses: 422 with its reason; the job, its
    worker and its next start all keep the config it had.
    """
    code, job = await call(reactor, daemon, "POST", "/jobs",
                           {"module": DEMO, "config": {"greeting": "bonjour"}})
    guid = job["guid"]
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=ready&timeout=30")
    code, answer = await call(reactor, daemon, "PATCH", f"/jobs/{guid}/config",
                              {"greeting": ""})
    assert (code, answer) == (422, {"error": f"job {guid} refused the change: ValueError:"
                                             " greeting must be 1 to 80 characters"})
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}")
    assert job["config"] == {"greeting": "bonjour"}
    code, seen = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
    assert seen["config"]["greeting"] == "bonjour"
    # Its next start reads what was kept: kill it, and follow the events to its new run.
    http, pool = make_http(reactor)
    client = ControlClient(http, daemon.url, daemon.token, reactor)
    opened, back = Deferred(), Deferred()

    def seen_event(event: ServerEvent) -> None:
        if event.event == "open" and not opened.called:
            opened.callback(None)
        elif (event.event == "state" and event.data["guid"] == guid and not back.called
              and event.data["event"] == "ready" and event.data["pid"] != job["pid"]):
            back.callback(event)

    following = Deferred.fromCoroutine(client.events(seen_event))
    try:
        await opened.addTimeout(30, reactor)
        os.kill(job["pid"], signal.SIGKILL)
        await back.addTimeout(30, reactor)
    finally:
        following.addErrback(lambda failure: failure.trap(CancelledError))
        following.cancel()
        await pool.closeCachedConnections()
    code, seen = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
    assert seen["config"]["greeting"] == "bonjour"
    await call(reactor, daemon, "DELETE", f"/jobs/{guid}")
    await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=exited&timeout=30")


@pytest_twisted.ensureDeferred
async def test_the_relay_shadows_no_worker_path(daemons, reactor):
    """
    Through /jobs/{guid}/proxy/, a worker's own /logs, /config, /events and /restart
    answer as the worker does; the same paths without the prefix are the API's.
    """
    daemon = await daemons(extra="\n[turberfield_twisted.testing.echo_paths]\n", size=10)
    code, job = await call(reactor, daemon, "POST", "/jobs",
                           {"module": "turberfield_twisted.testing.echo_paths"})
    guid = job["guid"]
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=ready&timeout=30")
    assert job["state"] == "ready"
    for method, path in [("GET", "/logs"), ("PATCH", "/config"), ("POST", "/events"),
                         ("POST", "/restart"), ("GET", "/")]:
        code, answer = await call(reactor, daemon, method, f"/jobs/{guid}/proxy{path}", {})
        assert (code, answer) == (200, {"guid": guid, "method": method, "path": path}), path
    code, logs = await call(reactor, daemon, "GET", f"/jobs/{guid}/logs")
    assert code == 200 and logs["guid"] == guid and "lines" in logs
    await call(reactor, daemon, "DELETE", f"/jobs/{guid}")
    await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=exited&timeout=30")
