"""
Per-job limits end to end: a real worker that allocates past its
max_memory is restarted, saying so; max_open_files and max_cpu_seconds are
the worker process's own rlimits, and the kernel ends one that spins.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq
from twisted.internet.defer import Deferred

from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.procs import wait_gone

HOG = "turberfield_twisted.testing.hog"
LIMITS = f"""ready_timeout = 20
limit_interval = 0.2

[{HOG}]
max_memory = 150M
max_open_files = 64
max_cpu_seconds = 2
backoff_initial = 0.1
"""


async def call(reactor: Any, daemon: Daemon, method: str, path: str,
               timeout: float = 60) -> tuple[int, Any]:
    response = await treq.request(method, daemon.url + path, headers=daemon.headers(),
                                  timeout=timeout, reactor=reactor)
    content = await response.content()
    try:
        return response.code, json.loads(content) if content else None
    except ValueError:
        return response.code, content


def logged(reactor: Any, daemon: Daemon, pattern: str, after: int = 0) -> Deferred[int]:
    return daemon.logged(pattern, after).addTimeout(30, reactor)


async def launch(reactor: Any, daemon: Daemon) -> dict[str, Any]:
    response = await treq.post(daemon.url + "/jobs", json={"module": HOG},
                               headers=daemon.headers(), timeout=60, reactor=reactor)
    job = json.loads(await response.content())
    assert response.code == 201, job
    _, job = await call(reactor, daemon, "GET", f"/jobs/{job['guid']}?wait=ready&timeout=30")
    assert job["state"] == "ready", job
    return job


def proc_limits(pid: int) -> dict[str, list[str]]:
    with open(f"/proc/{pid}/limits") as f:
        return {line[:26].strip(): line[26:].split()[:2] for line in f.readlines()[1:]}


@pytest_twisted.ensureDeferred
async def test_a_worker_over_its_max_memory_is_restarted_saying_so(daemons, reactor):
    """It allocates 200 MiB under a 150 MiB limit: stopped, restarted, last_error says why."""
    daemon = await daemons(extra=LIMITS, size=50)
    job = await launch(reactor, daemon)
    guid, first_pid = job["guid"], job["pid"]
    seen = len(daemon.lines)
    code, _ = await call(reactor, daemon, "POST", f"/jobs/{guid}/proxy/allocate?mb=200")
    assert code in (200, 502)  # its answer may not make it before the SIGTERM
    over = await logged(reactor, daemon, rf"job {guid} is over its max_memory: RSS \d+ bytes,"
                        rf" limit {150 * 1024 * 1024}: stopping it to restart it", seen)
    await logged(reactor, daemon, rf"job {guid} \({HOG}\) ready", over)
    await wait_gone(reactor, [first_pid])
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}")
    assert (job["state"], job["restarts"]) == ("ready", 1)
    assert job["last_error"].startswith("over its max_memory: RSS ")
    assert job["pid"] != first_pid


@pytest_twisted.ensureDeferred
async def test_open_files_and_cpu_time_are_the_workers_rlimits(daemons, reactor):
    """/proc shows the limits on the worker; one that spins is killed at its CPU limit."""
    daemon = await daemons(extra=LIMITS, size=50)
    job = await launch(reactor, daemon)
    limits = proc_limits(job["pid"])
    assert limits["Max open files"] == ["64", "64"]
    assert limits["Max cpu time"] == ["2", "2"]
    seen = len(daemon.lines)
    spinning = treq.post(f"{daemon.url}/jobs/{job['guid']}/proxy/burn", headers=daemon.headers(),
                         timeout=60, reactor=reactor)
    await logged(reactor, daemon, rf"job {job['guid']} ended: signal 9", seen)
    response = await spinning
    assert response.code == 502  # the relay's answer: the worker went away
    _, job = await call(reactor, daemon, "GET", f"/jobs/{job['guid']}")
    assert "signal 9 (max_cpu_seconds is 2" in job["last_error"], job
