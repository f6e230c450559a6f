"""
A job's rlimits are its own before its code runs: a cold worker is started through
util-linux prlimit, a warm one sets them on itself after its fork. Through a real
daemon, the worker's own first read of its rlimits already sees them.
"""

from __future__ import annotations

import json
import resource
from typing import Any

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.errors import SpawnFailed
from turberfield_twisted.launch.local import LocalLauncher
from turberfield_twisted.testing.fakes import FakeProcessReactor
from turberfield_twisted.testing.ports import free_ports

RLIMITS = "turberfield_twisted.testing.rlimits"
LIMITS = "max_open_files = 64\nmax_cpu_seconds = 100\n"


def test_a_cold_worker_runs_through_prlimit_then_setsid():
    """With rlimits, the command is prlimit (each limit soft:hard) -- setsid python -m ..."""
    reactor = FakeProcessReactor()
    launcher = LocalLauncher(reactor, python="/py", setsid="/bin/setsid",
                             prlimit="/bin/prlimit")
    launcher.spawn("m", "g", 9000, b"", lambda *_: None,
                   Limits(max_open_files=64, max_cpu_seconds=100))
    launcher.spawn("m", "h", 9001, b"", lambda *_: None, Limits(max_memory=10))
    limited, plain = reactor.spawned
    assert limited.executable == "/bin/prlimit"
    assert limited.args == ["prlimit", "--cpu=100:100", "--nofile=64:64", "--",
                            "/bin/setsid", "/py", "-P", "-m", "m", "--guid", "g",
                            "--port", "9000"]
    assert (plain.executable, plain.args[:2]) == ("/bin/setsid", ["setsid", "/py"])


def test_without_prlimit_the_limits_are_set_just_after_the_spawn(monkeypatch):
    """No prlimit(1): prlimit(2) on the new pid; if the kernel refuses, it is killed,
    and the spawn fails saying which limit."""
    reactor = FakeProcessReactor()
    launcher = LocalLauncher(reactor, python="/py", setsid=None, prlimit=None)
    calls = []
    monkeypatch.setattr(resource, "prlimit", lambda *args: calls.append(args))
    launcher.spawn("m", "g", 9000, b"", lambda *_: None, Limits(max_open_files=64))
    assert calls == [(reactor.spawned[0].pid, resource.RLIMIT_NOFILE, (64, 64))]

    def refuse(*args: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(resource, "prlimit", refuse)
    with pytest.raises(SpawnFailed, match=r"could not set its max_open_files \(Operation"):
        launcher.spawn("m", "h", 9001, b"", lambda *_: None, Limits(max_open_files=64))
    assert reactor.spawned[1].signals == ["KILL"]


async def _first_read(daemons: Any, reactor: Any, section: str, warm: bool) -> dict[str, Any]:
    """The rlimits a real daemon's worker of testing.rlimits read first, under ``section``."""
    with free_ports() as ports:
        daemon = await daemons(ports.low, ports.high, f"\n[{RLIMITS}]\n{section}")
        if warm:
            await daemon.logged(r"template of \S+rlimits ready").addTimeout(30, reactor)
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

        async def call(method: str, path: str, body: Any = None) -> Any:
            response = await http.request(
                method, daemon.url + path, headers=daemon.headers(), timeout=60,
                data=None if body is None else json.dumps(body).encode(), reactor=reactor)
            return json.loads(await response.content())

        job = await call("POST", "/jobs", {"module": RLIMITS})
        job = await call("GET", f"/jobs/{job['guid']}?wait=ready&timeout=30")
        assert job["state"] == "ready", job
        seen = await call("GET", f"/jobs/{job['guid']}/proxy/")
        with open(f"/proc/{job['pid']}/cmdline", "rb") as f:
            seen["cmdline"] = f.read().split(b"\0")
        return seen  # type: ignore[no-any-return]


@pytest_twisted.ensureDeferred
async def test_a_cold_workers_first_read_of_its_rlimits_sees_them(daemons, reactor):
    """max_open_files 64, max_cpu_seconds 100: the worker's first act already reads them;
    its command line is the worker's own (prlimit and setsid exec'd into it)."""
    seen = await _first_read(daemons, reactor, LIMITS, warm=False)
    assert (seen["nofile"], seen["cpu"]) == ([64, 64], [100, 100])
    assert seen["cmdline"][1:4] == [b"-P", b"-m", RLIMITS.encode()]


@pytest_twisted.ensureDeferred
async def test_a_warm_workers_first_read_of_its_rlimits_sees_them(daemons, reactor):
    """A warm worker (forked from its template) has them too before its module runs."""
    seen = await _first_read(daemons, reactor, LIMITS + "warm = true\n", warm=True)
    assert (seen["nofile"], seen["cpu"]) == ([64, 64], [100, 100])
