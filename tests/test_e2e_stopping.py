"""
What a real daemon answers while it stops: on connections opened before
its SIGTERM, every change is refused (503, ``Retry-After``) and nothing is
changed, while a job that ignores SIGTERM holds the stop open.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest_twisted
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, gatherResults
from twisted.web.client import Agent, HTTPConnectionPool

from turberfield_twisted.daemon.statedir import StateDir
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.testing import hang
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone

DEMO = "turberfield_twisted.demo.hello"
HANG = "turberfield_twisted.testing.hang"
#: How long any one step may take.
BOUND = 30
#: Connections opened before SIGTERM, one for each change asked after it.
CONNECTIONS = 7


async def call(http: HTTPClient, reactor: Any, daemon: Daemon, method: str, path: str,
               body: Any = None) -> tuple[int, Any, list[bytes] | None]:
    """One request on ``http``'s connections: status, JSON body, Retry-After."""
    data = json.dumps(body).encode() if body is not None else None
    response = await http.request(method, daemon.url + path, headers=daemon.headers(),
                                  data=data, timeout=BOUND, reactor=reactor)
    content = await response.content()
    return (response.code, json.loads(content) if content else None,
            response.headers.getRawHeaders(b"retry-after"))


@pytest_twisted.ensureDeferred
async def test_every_change_asked_while_the_daemon_stops_is_refused_and_changes_nothing(
        reactor, tmp_path):
    """
    After SIGTERM, while a job that ignores it holds the stop open, a launch, a stop,
    a restart, a config change, a reload and adding or removing a hook each answer 503
    "the daemon is stopping" with a Retry-After, and none of them is made: no job, no
    state change, nothing in the store.
    """
    state = tmp_path / "state"
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = CONNECTIONS
    pool.retryAutomatically = False  # a refused request is not sent again elsewhere
    http = HTTPClient(Agent(reactor, pool=pool))
    with free_ports(10) as ports:
        config = tmp_path / "proactor.cfg"
        config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low}\n"
                          f"child_port_max = {ports.high}\nstop_timeout = 120\n\n"
                          f"[{HANG}]\ngreeting = hi\noverridable = greeting\n")
        daemon = Daemon.start(reactor, state, config=config, cwd=tmp_path)
        try:
            await daemon.listening.addTimeout(BOUND, reactor)
            code, job, _ = await call(http, reactor, daemon, "POST", "/jobs", {"module": HANG})
            guid = job["guid"]
            code, job, _ = await call(http, reactor, daemon, "GET",
                                      f"/jobs/{guid}?wait=ready&timeout=30")
            assert job["state"] == "ready", job
            code, hook, _ = await call(http, reactor, daemon, "POST", "/hooks",
                                       {"url": "http://127.0.0.1:9/hook",
                                        "events": ["worker:never"]})
            assert code == 201, hook
            # Connections opened before the SIGTERM, kept alive.
            await gatherResults([Deferred.fromCoroutine(call(http, reactor, daemon, "GET",
                                                             "/health"))
                                 for _ in range(CONNECTIONS)])

            daemon.signal(signal.SIGTERM)
            await daemon.logged(hang.IGNORED).addTimeout(BOUND, reactor)
            mark = len(daemon.lines)
            for method, path, body in [
                ("POST", "/jobs", {"module": DEMO}),
                ("POST", f"/jobs/{guid}/restart", None),
                ("DELETE", f"/jobs/{guid}", None),
                ("PATCH", f"/jobs/{guid}/config", {"greeting": "hej"}),
                ("POST", "/reload", None),
                ("POST", "/hooks", {"url": "http://127.0.0.1:9/other"}),
                ("DELETE", f"/hooks/{hook['id']}", None),
            ]:
                code, answer, retry = await call(http, reactor, daemon, method, path, body)
                assert (code, answer, retry) == (503, {"error": "the daemon is stopping"},
                                                 [b"5"]), (method, path)
            code, jobs, _ = await call(http, reactor, daemon, "GET", "/jobs")
            assert [(j["guid"], j["state"], j["wanted"], j["config"])
                    for j in jobs["jobs"]] == [(guid, "stopping", "running", {})]
            code, hooks, _ = await call(http, reactor, daemon, "GET", "/hooks")
            assert [h["id"] for h in hooks["hooks"]] == [hook["id"]]
            assert not any("launched" in line or "reloaded" in line
                           for line in daemon.lines[mark:])

            os.kill(job["pid"], signal.SIGKILL)  # its stop is over: the daemon's ends
            status = await daemon.ended.addTimeout(BOUND, reactor)
            assert status.signal == signal.SIGTERM  # twistd ends by the signal that stopped it
            await wait_gone(reactor, [job["pid"]])
        finally:
            await pool.closeCachedConnections()
            if not daemon.ended.called:
                workers = children_of(daemon.pid or 0)
                daemon.signal(signal.SIGKILL)
                await daemon.ended.addTimeout(BOUND, reactor)
                await wait_gone(reactor, workers)
    kept = StateDir.open(Path(state))
    kept.lock()
    store = Store.open(kept)
    try:
        assert [(r.guid, r.module, r.wanted, dict(r.overrides)) for r in store.jobs()] == [
            (guid, HANG, "running", {})]
        assert [r.id for r in store.hooks()] == [hook["id"]]
    finally:
        store.close()
        kept.close()
    assert children_of(os.getpid()) == []
