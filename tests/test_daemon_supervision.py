"""Supervision through a real daemon: no orphans, and fifty jobs at once."""

from __future__ import annotations

import json
import os
import re
import signal
from typing import Any

import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool

from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.procs import children_of, pid_alive, wait_gone

DEMO = "turberfield_twisted.demo.hello"


class Api:
    """A client of one daemon, on a pool of at most one idle connection."""

    def __init__(self, reactor: Any, daemon: Daemon):
        self.reactor = reactor
        self.daemon = daemon
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 1
        self.http = HTTPClient(Agent(reactor, pool=self.pool))

    async def settled_fds(self) -> set[str]:
        """
        The daemon's open fds with exactly one connection of ours open: close
        ours, then make two requests in turn on one new connection (by the
        second, the daemon has seen the old ones close).
        """
        await self.pool.closeCachedConnections()
        for _ in range(2):
            code, _ = await self("GET", "/health")
            assert code == 200
        assert self.daemon.pid is not None
        return set(os.listdir(f"/proc/{self.daemon.pid}/fd"))

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {b"Authorization": [f"Bearer {self.daemon.token}".encode()]}
        data = json.dumps(body).encode() if body is not None else None
        response = await self.http.request(method, self.daemon.url + path, headers=headers,
                                           data=data, timeout=90, reactor=self.reactor)
        content = await response.content()
        return response.code, json.loads(content) if content else None

    async def launch_ready(self) -> dict[str, Any]:
        code, job = await self("POST", "/jobs", {"module": DEMO})
        assert code == 201, job
        code, job = await self("GET", f"/jobs/{job['guid']}?wait=ready&timeout=60")
        assert job["state"] == "ready", job
        return job  # type: ignore[no-any-return]


@pytest_twisted.ensureDeferred
async def test_sigkilled_daemon_leaves_no_worker(daemons, reactor):
    """SIGKILL the daemon with five ready workers: each sees its lifeline end and exits."""
    daemon = await daemons(extra="ready_timeout = 60\n", size=50)
    api = Api(reactor, daemon)
    jobs = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(api.launch_ready()) for _ in range(5)])
    pids = [job["pid"] for job in jobs]
    assert all(pid_alive(pid) for pid in pids)
    daemon.signal(signal.SIGKILL)
    status = await daemon.ended.addTimeout(30, reactor)
    assert status.signal == signal.SIGKILL
    await api.pool.closeCachedConnections()
    await wait_gone(reactor, pids, timeout=10)
    assert not any(pid_alive(pid) for pid in pids)
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_sigkilled_daemon_leaves_no_warm_worker(daemons, reactor):
    """
    SIGKILL the daemon with three ready warm workers (forked by the
    template, not by the daemon): each sees its lifeline end and exits.
    """
    daemon = await daemons(extra=f"ready_timeout = 60\n\n[{DEMO}]\nwarm = true\n", size=10)
    found = await daemon.logged(rf"template of {DEMO} ready \(pid \d+\)").addTimeout(
        60, reactor)
    template = int(re.search(r"\(pid (\d+)\)", daemon.lines[found]).group(1))  # type: ignore[union-attr]
    api = Api(reactor, daemon)
    jobs = [await api.launch_ready() for _ in range(3)]
    pids = [job["pid"] for job in jobs]
    assert sorted(children_of(template)) == sorted(pids)  # each forked by the template
    daemon.signal(signal.SIGKILL)
    status = await daemon.ended.addTimeout(30, reactor)
    assert status.signal == signal.SIGKILL
    await api.pool.closeCachedConnections()
    try:
        await wait_gone(reactor, [*pids, template], timeout=10)
    finally:  # orphans (no longer the daemon's children) are ended here, by pid
        left = [pid for pid in [*pids, template] if pid_alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert left == []
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_fifty_jobs_at_once_all_ready_all_stopped_nothing_left(daemons, reactor):
    """Fifty launches (ten at a time) all get ready and all stop: no process, port or fd left."""
    daemon = await daemons(extra="ready_timeout = 60\n", size=100)
    api = Api(reactor, daemon)
    assert daemon.pid is not None

    async def stop(guid: str) -> dict[str, Any]:
        code, _ = await api("DELETE", f"/jobs/{guid}")
        assert code == 202
        code, job = await api("GET", f"/jobs/{guid}?wait=exited&timeout=60")
        return job  # type: ignore[no-any-return]

    # One job first, so that what the daemon makes lazily exists before counting.
    warm = await api.launch_ready()
    assert (await stop(warm["guid"]))["state"] == "exited"
    fds_before = await api.settled_fds()

    gate = defer.DeferredSemaphore(10)
    jobs = await defer.gatherResults([
        gate.run(lambda: defer.Deferred.fromCoroutine(api.launch_ready())) for _ in range(50)
    ])
    assert len({j["guid"] for j in jobs}) == 50
    assert len({j["port"] for j in jobs}) == 50
    pids = [j["pid"] for j in jobs]
    stopped = await defer.gatherResults([
        gate.run(lambda g=j["guid"]: defer.Deferred.fromCoroutine(stop(g))) for j in jobs
    ])
    assert {j["state"] for j in stopped} == {"exited"}
    await wait_gone(reactor, pids, timeout=30)
    assert children_of(daemon.pid) == []
    code, health = await api("GET", "/health")
    assert (code, health["jobs"]) == (200, 0)
    fds_after = await api.settled_fds()
    assert fds_after == fds_before, {
        fd: os.readlink(f"/proc/{daemon.pid}/fd/{fd}") for fd in fds_after ^ fds_before
        if os.path.lexists(f"/proc/{daemon.pid}/fd/{fd}")}
    await api.pool.closeCachedConnections()
    daemon.signal(signal.SIGTERM)
    status = await daemon.ended.addTimeout(30, reactor)
    assert status.code == 0 or status.signal == signal.SIGTERM


@pytest_twisted.ensureDeferred
async def test_hundred_launches_at_once_on_the_default_config_all_get_ready(daemons, reactor):
    """
    A hundred launches at once on the default ready_timeout and max_starting: every job
    gets ready with no restart and no failed start (admission, not a restart storm).
    """
    daemon = await daemons(size=128)
    api = Api(reactor, daemon)
    launched = await defer.gatherResults([
        defer.Deferred.fromCoroutine(api("POST", "/jobs", {"module": DEMO}))
        for _ in range(100)])
    assert {code for code, _ in launched} == {201}
    guids = [job["guid"] for _, job in launched]

    async def ready(guid: str) -> dict[str, Any]:
        for _ in range(5):  # each wait is at most 60 s; the burst may take longer on 2 cores
            _, job = await api("GET", f"/jobs/{guid}?wait=ready&timeout=60")
            if job["state"] not in ("waiting", "starting"):
                break
        return job  # type: ignore[no-any-return]

    jobs = await defer.gatherResults([defer.Deferred.fromCoroutine(ready(g)) for g in guids])
    assert {job["state"] for job in jobs} == {"ready"}
    assert {job["restarts"] for job in jobs} == {0}
    pids = [job["pid"] for job in jobs]
    await api.pool.closeCachedConnections()
    daemon.signal(signal.SIGTERM)
    await daemon.ended.addTimeout(60, reactor)
    await wait_gone(reactor, pids, timeout=30)
    assert children_of(os.getpid()) == []
