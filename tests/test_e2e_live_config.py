"""
Live config changes through a real daemon and a real worker whose
``on_config`` waits for the test (:mod:`turberfield_twisted.testing.gated`):
two changes of one job run one at a time, and the daemon, the worker and
the store agree on the one that was made.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import Deferred, DeferredList

from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.gated import WAITS
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone

GATED = "turberfield_twisted.testing.gated"
#: How long any one step may take.
BOUND = 30


async def call(reactor: Any, daemon: Daemon, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    response = await treq.request(method, daemon.url + path, headers=daemon.headers(),
                                  data=data, timeout=60, reactor=reactor)
    content = await response.content()
    return response.code, json.loads(content) if content else None


def write_config(path: Path, low: int, high: int) -> Path:
    path.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {low}\n"
                    f"child_port_max = {high}\nready_timeout = 20\n\n"
                    f"[{GATED}]\ngreeting = default\noverridable = greeting\n")
    return path


async def end(reactor: Any, daemon: Daemon) -> None:
    """SIGTERM ``daemon``; wait until it and every worker it had are gone."""
    workers = children_of(daemon.pid or 0)
    daemon.signal(signal.SIGTERM)
    await daemon.ended.addTimeout(BOUND, reactor)
    await wait_gone(reactor, workers)


def either(*waits: Deferred[int]) -> Deferred[Any]:
    """Fire once one of ``waits`` has; the others' failures (when the daemon ends) are dropped."""
    for wait in waits:
        wait.addErrback(lambda _: None)
    return DeferredList(list(waits), fireOnOneCallback=True)


@pytest.mark.parametrize(("first_taken", "second_taken"), [(False, True), (True, False)],
                         ids=["first-refused", "second-refused"])
@pytest_twisted.ensureDeferred
async def test_two_live_changes_of_one_job_run_one_at_a_time(reactor, tmp_path, first_taken,
                                                             second_taken):
    """
    A second PATCH while the first is in its worker's on_config waits for it; each is
    answered as its worker took it (200) or refused it (422), and afterwards the job, its
    worker and the store (what a restarted daemon brings back) all hold the one taken.
    """
    first, second = "alpha", "beta"
    taken = first if first_taken else second
    state = tmp_path / "state"
    with free_ports(10) as ports:
        config = write_config(tmp_path / "proactor.cfg", ports.low, ports.high)
        daemon = Daemon.start(reactor, state, config=config, cwd=tmp_path)
        again = None
        try:
            await daemon.listening.addTimeout(BOUND, reactor)
            code, job = await call(reactor, daemon, "POST", "/jobs", {"module": GATED})
            assert code == 201, job
            guid = job["guid"]
            code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=ready&timeout=30")
            assert job["state"] == "ready", job

            patched = [Deferred.fromCoroutine(
                call(reactor, daemon, "PATCH", f"/jobs/{guid}/config", {"greeting": first}))]
            mark = await daemon.logged(WAITS.format(greeting=first)).addTimeout(BOUND, reactor)
            patched.append(Deferred.fromCoroutine(
                call(reactor, daemon, "PATCH", f"/jobs/{guid}/config", {"greeting": second})))
            # The second change has reached the daemon: it waits its turn there (or, were
            # changes not one at a time, its worker's on_config runs beside the first's).
            await either(daemon.logged(f"job {guid}: a config change waits", mark),
                         daemon.logged(WAITS.format(greeting=second), mark)
                         ).addTimeout(BOUND, reactor)
            code, _ = await call(reactor, daemon, "POST", f"/jobs/{guid}/proxy/release",
                                 {"greeting": first, "accept": first_taken})
            assert code == 200
            await daemon.logged(WAITS.format(greeting=second), mark).addTimeout(BOUND, reactor)
            code, _ = await call(reactor, daemon, "POST", f"/jobs/{guid}/proxy/release",
                                 {"greeting": second, "accept": second_taken})
            assert code == 200
            answers = [await d.addTimeout(BOUND, reactor) for d in patched]
            assert [code for code, _ in answers] == [200 if first_taken else 422,
                                                     200 if second_taken else 422], answers

            code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}")
            assert job["config"] == {"greeting": taken}
            code, seen = await call(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
            assert seen == {"greeting": taken}

            # What the store keeps is what a daemon started again on it brings back.
            await end(reactor, daemon)
            again = Daemon.start(reactor, state, config=config, cwd=tmp_path)
            await again.listening.addTimeout(BOUND, reactor)
            code, job = await call(reactor, again, "GET", f"/jobs/{guid}?wait=ready&timeout=30")
            assert (job["state"], job["config"]) == ("ready", {"greeting": taken}), job
            code, seen = await call(reactor, again, "GET", f"/jobs/{guid}/proxy/")
            assert seen == {"greeting": taken}
        finally:
            for running in (daemon, again):
                if running is not None and not running.ended.called:
                    await end(reactor, running)
    assert children_of(os.getpid()) == []
