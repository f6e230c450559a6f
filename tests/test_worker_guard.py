"""
A worker bound beyond loopback asks for its job token, end to end, on a
non-loopback address: in a network namespace this test makes (``ip netns
add``; a veth pair inside it, one end holding 10.203.0.1/32) and deletes
after. The test's own thread enters the namespace (``setns``) for the
test, so the daemon it spawns, its worker and every connection it makes
are in there: nothing is bound outside it. Ports from free_ports.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from typing import Any

import pytest
import pytest_twisted
import treq
from _system import absent

from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.procs import children_of

DEMO = "turberfield_twisted.demo.hello"
ADDR = "10.203.0.1"
_CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=False)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


@pytest.fixture
def netns() -> Any:
    """This test's thread in a network namespace of its own where ADDR is a local address."""
    if shutil.which("ip") is None:
        absent("no ip(8) for a network namespace: apt-get install iproute2")
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")
    name = f"tf-guard-{os.getpid()}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        absent(f"no network namespace here: {made.stderr.strip()}")
    try:
        for step in (["link", "set", "lo", "up"],
                     ["link", "add", "tfa", "type", "veth", "peer", "name", "tfb"],
                     ["addr", "add", f"{ADDR}/32", "dev", "tfa"],
                     ["link", "set", "tfa", "up"], ["link", "set", "tfb", "up"]):
            done = _ip("-n", name, *step)
            if done.returncode != 0:
                absent(f"ip {' '.join(step)} in a namespace: {done.stderr.strip()}")
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        theirs = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(theirs)
            try:
                yield name
            finally:
                _setns(own)
        finally:
            os.close(own)
            os.close(theirs)
    finally:
        _ip("netns", "del", name)


@pytest_twisted.async_yield_fixture
async def daemon(reactor: Any, tmp_path: Any, netns: str, take_ports: Any) -> Any:
    """A daemon in the namespace whose demo workers bind ADDR; it and they are gone after."""
    ports = take_ports(100)
    config = tmp_path / "proactor.cfg"
    config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low}\n"
                      f"child_port_max = {ports.high}\n\n[{DEMO}]\nlisten_addr = {ADDR}\n")
    started = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path)
    await started.listening.addTimeout(30, reactor)
    yield started
    await started.stop(reactor)  # and its workers; killed if they do not end
    assert children_of(os.getpid()) == []


async def request(reactor: Any, method: str, url: str, headers: Any = None,
                  body: Any = None) -> tuple[int, Any]:
    response = await treq.request(method, url, headers=headers or {}, timeout=10,
                                  reactor=reactor, persistent=False,
                                  data=None if body is None else json.dumps(body).encode())
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_a_worker_beyond_loopback_answers_only_with_its_job_token(reactor, daemon):
    """
    Bound to a non-loopback address, a worker answers /health to anyone and
    everything else only with its job token: the daemon's relay and config
    pushes carry it; a caller on the network without it gets 401.
    """
    auth = daemon.headers()
    code, job = await request(reactor, "POST", daemon.url + "/jobs", auth, {"module": DEMO})
    guid = job["guid"]
    code, job = await request(reactor, "GET", f"{daemon.url}/jobs/{guid}?wait=ready&timeout=20",
                              auth)
    assert job["state"] == "ready", job
    direct = f"http://{ADDR}:{job['port']}"
    assert await request(reactor, "GET", direct + "/health") == (
        200, {"status": "ok", "guid": guid})
    for headers in ({}, auth, {b"Authorization": [b"Bearer not-the-token"]}):
        for method, path in (("GET", "/"), ("POST", "/echo"), ("POST", "/notify")):
            code, body = await request(reactor, method, direct + path, headers, {"x": 1})
            assert (code, body) == (401, {"error": "this job's token is needed"}), path
    code, body = await request(reactor, "POST", f"{daemon.url}/jobs/{guid}/proxy/echo", auth,
                               {"x": 1})
    assert (code, body) == (200, {"guid": guid, "echo": {"x": 1}})
    code, job = await request(reactor, "PATCH", f"{daemon.url}/jobs/{guid}/config", auth,
                              {"greeting": "hej"})
    assert code == 200, job
    code, body = await request(reactor, "GET", f"{daemon.url}/jobs/{guid}/proxy/", auth)
    assert (code, body["config"]["greeting"]) == (200, "hej")
