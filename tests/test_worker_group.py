"""
A worker whose lifeline is lost ends its whole process group: what it started goes
with it. On a Clock with a fake group, then through a real daemon killed with SIGKILL,
for a cold worker and a warm (forked) one.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest_twisted
from treq.client import HTTPClient
from twisted.internet.task import Clock
from twisted.web.client import Agent, HTTPConnectionPool
from zope.interface import implementer
from zope.interface.verify import verifyObject

from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import pid_alive, wait_gone
from turberfield_twisted.worker.group import GRACE, IProcessGroup, OwnGroup, end_group

SPAWNER = "turberfield_twisted.testing.spawner"


@implementer(IProcessGroup)
class FakeGroup:
    """Members that leave when told to; a record of the signals sent."""

    def __init__(self, members: list[int], deaf: set[int] = frozenset(), leads: bool = True):
        self.members = list(members)
        self.deaf = set(deaf)
        self._leads = leads
        self.sent: list[tuple[str, int | None]] = []

    def leads(self) -> bool:
        return self._leads

    def others(self) -> list[int]:
        return list(self.members)

    def terminate(self) -> None:
        self.sent.append(("TERM", None))
        self.members = [pid for pid in self.members if pid in self.deaf]

    def kill(self, pid: int) -> None:
        self.sent.append(("KILL", pid))
        self.members.remove(pid)


def test_the_fakes_and_the_real_group_provide_the_interface():
    """FakeGroup and OwnGroup are IProcessGroups."""
    verifyObject(IProcessGroup, FakeGroup([]))
    verifyObject(IProcessGroup, OwnGroup())


def test_members_that_leave_on_sigterm_need_no_sigkill():
    """SIGTERM to the group; all gone at the next look: done, no SIGKILL."""
    clock, group = Clock(), FakeGroup([11, 12])
    done = end_group(clock, group)
    assert group.sent == [("TERM", None)] and not done.called
    clock.advance(0.05)
    assert done.called and done.result == []
    assert group.sent == [("TERM", None)]


def test_a_member_deaf_to_sigterm_gets_sigkill_after_the_grace():
    """One that ignores SIGTERM is still there GRACE seconds on: it alone gets SIGKILL."""
    clock, group = Clock(), FakeGroup([11, 12], deaf={12})
    done = end_group(clock, group)
    clock.pump([0.05] * int(GRACE / 0.05 - 1))
    assert not done.called
    clock.advance(0.1)
    assert done.result == [12]
    assert group.sent == [("TERM", None), ("KILL", 12)]


def test_a_group_not_led_or_empty_is_left_alone():
    """No signal at all when this process leads no group, or is alone in its own."""
    for group in (FakeGroup([11], leads=False), FakeGroup([])):
        done = end_group(Clock(), group)
        assert done.called and done.result == [] and group.sent == []


# -- through a real daemon -----------------------------------------------------------


async def _orphaned_grandchild(daemons: Any, reactor: Any, section: str,
                               launch: dict[str, Any], warm: bool) -> None:
    """
    A daemon with ``section`` for the spawner; launch it (``launch``), note its worker
    and grandchild, SIGKILL the daemon: both must be gone within 30 s.
    """
    with free_ports() as ports:
        daemon = await daemons(ports.low, ports.high, f"\n[{SPAWNER}]\n{section}")
        if warm:
            await daemon.logged(r"template of \S+spawner ready").addTimeout(30, reactor)
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

        async def call(method: str, path: str, body: Any = None) -> Any:
            response = await http.request(
                method, daemon.url + path, headers=daemon.headers(), timeout=60,
                data=None if body is None else json.dumps(body).encode(), reactor=reactor)
            return json.loads(await response.content())

        job = await call("POST", "/jobs", {"module": SPAWNER, **launch})
        job = await call("GET", f"/jobs/{job['guid']}?wait=ready&timeout=30")
        assert job["state"] == "ready", job
        worker = job["pid"]
        grandchild = (await call("GET", f"/jobs/{job['guid']}/proxy/child"))["pid"]
        forked = _parent(worker) != daemon.pid  # a warm worker's parent is its template
        assert forked == warm
        try:
            daemon.signal(signal.SIGKILL)
            await daemon.ended.addTimeout(30, reactor)
            await wait_gone(reactor, [worker, grandchild], timeout=30)
        finally:
            for pid in (grandchild, worker):
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            await wait_gone(reactor, [worker, grandchild])


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


@pytest_twisted.ensureDeferred
async def test_a_cold_workers_grandchild_deaf_to_sigterm_goes_when_the_daemon_is_killed(
        daemons, reactor):
    """SIGKILL to the daemon: its cold worker's grandchild, which ignores SIGTERM, is gone
    too (the worker sends its group SIGTERM, then SIGKILL, before it exits)."""
    await _orphaned_grandchild(daemons, reactor, "overridable = grandchild\n",
                               {"config": {"grandchild": "ignores-term"}}, warm=False)


@pytest_twisted.ensureDeferred
async def test_a_warm_workers_grandchild_goes_when_the_daemon_is_killed(daemons, reactor):
    """SIGKILL to the daemon: a warm (forked) worker's grandchild is gone with the worker."""
    await _orphaned_grandchild(daemons, reactor, "warm = true\n", {}, warm=True)
