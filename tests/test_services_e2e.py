"""
Services end to end: real workers behind one shared address, a client
loop at a fixed rate in a process of its own
(:mod:`turberfield_twisted.testing.loadloop`), and what a service does to
it while an instance is killed, while it is rolled out (twice, to a
module that fails at import) and while it is scaled: no request fails.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from turberfield_twisted.jobs.job import JobEvent, JobState
from turberfield_twisted.services.group import ServiceGroup
from turberfield_twisted.services.model import RolloutState, ServiceSpec
from turberfield_twisted.testing import running_initiator
from turberfield_twisted.testing.configs import DEMO, DEMO_SECTION
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import Child, wait_gone

BROKEN = "turberfield_twisted.testing.broken"


class LoadLoop(Child):
    """The client loop as a child process: its lines, and its counts once it has ended."""

    @classmethod
    def start(cls, reactor: Any, port: int, *options: str) -> LoadLoop:
        loop = cls("the client loop")
        argv = [sys.executable, "-P", "-m", "turberfield_twisted.testing.loadloop",
                "127.0.0.1", str(port), "--until-eof", *options]
        loop.transport = reactor.spawnProcess(loop, argv[0], argv,
                                              env={"PATH": os.environ.get("PATH", "")})
        loop.pid = loop.transport.pid
        return loop

    async def answered(self, count: int, reactor: Any) -> None:
        """Wait until it has had ``count`` answers (in steps of its --progress)."""
        await self.logged(rf"^answered {count}$").addTimeout(120, reactor)

    async def result(self, reactor: Any) -> dict[str, Any]:
        """Tell it to stop (EOF on its stdin); its counts once it has ended."""
        self.transport.closeStdin()
        await self.ended.addTimeout(60, reactor)
        return json.loads(self.lines[-1])


def until(init: Any, name: str, done: Callable[[ServiceGroup], bool], reactor: Any,
          timeout: float = 120) -> Deferred[None]:
    """Fire once ``done(group)`` is true of service ``name`` (checked on each job event)."""
    group = init.services.group(name)
    d: Deferred[None] = Deferred()

    def check(event: JobEvent | None = None) -> None:
        if not d.called and done(group):
            unsubscribe()
            d.callback(None)

    unsubscribe = init.subscribe(check)
    check()
    return d.addTimeout(timeout, reactor)


def all_ready(group: ServiceGroup) -> bool:
    return group.rollout is None and len(group.ready()) == group.spec.instances == len(
        group.members)


def rolled_out(group: ServiceGroup) -> bool:
    return group.rollout is None


@pytest.fixture
def address() -> Any:
    held = free_ports(10)
    yield held.low
    held.release()


def config(**module: Any) -> dict[str, Any]:
    return {"init": {"max_instances": 16, "stop_timeout": 10},
            DEMO: {**DEMO_SECTION, **module},
            BROKEN: {"overridable": "greeting"}}


def web(port: int, instances: int, **more: Any) -> ServiceSpec:
    return ServiceSpec(name="web", module=DEMO, host="127.0.0.1", port=port,
                       instances=instances, **more)


@pytest_twisted.ensureDeferred
async def test_two_instances_share_the_address_and_a_kill_9_loses_nothing(reactor, address):
    """
    A service of 2 instances answers on one address, connections reach both (counted by
    the guid each answer names), and a kill -9 of one leaves the address answering: the
    loop sees no error (requests the killed one held, closed before any byte of their
    answer, are sent again, as RFC 9110 9.2.2 lets an idempotent request be).
    """
    async with running_initiator(config()) as running:
        init = running.init
        group = init.services.create(web(address, 2))
        await until(init, "web", all_ready, reactor)
        loop = LoadLoop.start(reactor, address, "--rate", "200", "--count", "20000",
                              "--seconds", "100", "--progress", "100", "--retry-any")
        try:
            await loop.answered(300, reactor)
            victim = init.job("web.1")
            pid = victim.pid
            os.kill(pid, signal.SIGKILL)
            await wait_gone(reactor, [pid])
            await until(init, "web", lambda g: victim.restarts == 1 and all_ready(g), reactor)
            await loop.answered(loop_progress(loop) + 300, reactor)
        finally:
            result = await loop.result(reactor)
        assert result["failed"] == 0, result
        assert set(result["by"]) == {"web.1", "web.2"} and min(result["by"].values()) > 10
        assert group.members == ["web.1", "web.2"]


def loop_progress(loop: LoadLoop) -> int:
    """The last ``answered N`` the loop printed."""
    counts = [int(line.split()[1]) for line in loop.lines if line.startswith("answered ")]
    return counts[-1] if counts else 0


@pytest_twisted.ensureDeferred
async def test_two_rollouts_of_four_instances_lose_no_request(reactor, address):
    """
    A client loop at a fixed rate (half on kept-alive connections, half on new ones) runs
    while a service of 4 instances is rolled out twice: not one request fails (a reused
    kept-alive connection closed before any byte of the answer is sent again, as HTTP
    allows); at least 5,000 are answered, and every instance of the last rollout serves.
    """
    async with running_initiator(config()) as running:
        init = running.init
        group = init.services.create(web(address, 4))
        await until(init, "web", all_ready, reactor)
        loop = LoadLoop.start(reactor, address, "--rate", "500", "--count", "100000",
                              "--seconds", "200", "--progress", "250")
        during = []
        try:
            await loop.answered(500, reactor)
            for greeting in ("hej", "salut"):
                before = loop_progress(loop)
                init.services.roll_out("web", overrides={"greeting": greeting})
                await until(init, "web", rolled_out, reactor)
                assert group.last_rollout.state is RolloutState.DONE, group.last_rollout
                during.append(loop_progress(loop) - before)
            await loop.answered(max(5000, loop_progress(loop) + 250), reactor)
        finally:
            result = await loop.result(reactor)
        print(f"\nrollouts: {result['answered']} answered, {result['failed']} failed,"
              f" {result['retried']} retried on a reused connection, about {sum(during)}"
              f" answered during the two rollouts, in {result['seconds']} s")
        assert result["failed"] == 0, result
        assert result["answered"] >= 5000 and result["sent"] == result["answered"]
        assert group.members == ["web.9", "web.10", "web.11", "web.12"]
        assert {"web.9", "web.10", "web.11", "web.12"} <= set(result["by"])
        assert all(init.job(g).state is JobState.EXITED for g in
                   [f"web.{n}" for n in range(1, 9)])


@pytest_twisted.ensureDeferred
async def test_a_rollout_to_a_module_that_fails_at_import_rolls_back_and_loses_nothing(
        reactor, address):
    """
    Rolled out to a module that fails at import: the new instance fails, the rollout
    rolls back by itself and is failed with the ImportError; the old instances never
    stopped serving and no request failed.
    """
    async with running_initiator(config()) as running:
        init = running.init
        group = init.services.create(web(address, 2))
        await until(init, "web", all_ready, reactor)
        old = {guid: init.job(guid).pid for guid in group.members}
        loop = LoadLoop.start(reactor, address, "--rate", "200", "--count", "20000",
                              "--seconds", "100", "--progress", "100")
        try:
            await loop.answered(200, reactor)
            init.services.roll_out("web", module=BROKEN)
            await until(init, "web", rolled_out, reactor)
            await loop.answered(loop_progress(loop) + 200, reactor)
        finally:
            result = await loop.result(reactor)
        rollout = group.last_rollout
        assert rollout.state is RolloutState.FAILED
        assert "ImportError: broken: this module fails at import" in rollout.reason
        assert {guid: init.job(guid).pid for guid in group.members} == old
        assert group.spec.module == DEMO and all_ready(group)
        assert result["failed"] == 0 and result["retried"] == 0, result


@pytest_twisted.ensureDeferred
async def test_scaling_1_to_8_to_2_while_serving_loses_nothing(reactor, address):
    """Scaled from 1 to 8 instances (warm) and down to 2 while a loop runs: no failed
    request; the 2 left are the oldest."""
    async with running_initiator(config(warm="true")) as running:
        init = running.init
        group = init.services.create(web(address, 1))
        await until(init, "web", all_ready, reactor)
        loop = LoadLoop.start(reactor, address, "--rate", "300", "--count", "30000",
                              "--seconds", "100", "--progress", "150")
        try:
            await loop.answered(150, reactor)
            init.services.scale("web", 8)
            await until(init, "web", all_ready, reactor)
            await loop.answered(loop_progress(loop) + 300, reactor)
            init.services.scale("web", 2)
            gone = [guid for guid in init.workers if guid not in group.members]
            await until(init, "web", lambda g: all(
                init.job(guid).state is JobState.EXITED for guid in gone), reactor)
            await loop.answered(loop_progress(loop) + 300, reactor)
        finally:
            result = await loop.result(reactor)
        assert result["failed"] == 0, result
        assert group.members == ["web.1", "web.2"] and len(result["by"]) > 2


@pytest_twisted.ensureDeferred
async def test_a_sigkilled_daemon_takes_its_instances_and_its_successor_brings_them_back(
        reactor, tmp_path):
    """
    A daemon SIGKILLed with services running: every instance exits (its lifeline ended);
    a new daemon on the same state dir makes them again, with their instance counts (one
    made through the API, one declared), on the same addresses.
    """
    import treq

    from turberfield_twisted.testing.daemon import Daemon
    from turberfield_twisted.testing.procs import children_of

    children, addresses = free_ports(20), free_ports(10)
    api, made = addresses.low, addresses.low + 1
    config = tmp_path / "proactor.cfg"
    config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {children.low}\n"
                      f"child_port_max = {children.high}\n"
                      f"[service:api]\nmodule = {DEMO}\ninstances = 2\nlisten = {api}\n")
    state = tmp_path / "state"
    first = Daemon.start(reactor, state, config=config, cwd=tmp_path)
    second = None

    async def call(daemon: Daemon, method: str, path: str, body: Any = None) -> Any:
        response = await treq.request(method, daemon.url + path, headers=daemon.headers(),
                                      data=json.dumps(body).encode() if body else None,
                                      timeout=60, reactor=reactor)
        return response.code, json.loads(await response.content())

    try:
        await first.listening.addTimeout(30, reactor)
        code, _ = await call(first, "POST", "/services",
                             {"name": "web", "module": DEMO, "listen": str(made),
                              "instances": 3})
        assert code == 201
        pids = []
        for name, count in (("web", 3), ("api", 2)):
            _, view = await call(first, "GET", f"/services/{name}?wait=ready&timeout=45")
            assert view["ready"] == count, view
            pids += [member["pid"] for member in view["members"]]
        first.signal(signal.SIGKILL)
        await first.ended.addTimeout(30, reactor)
        await wait_gone(reactor, pids)  # their lifeline went with the daemon

        second = Daemon.start(reactor, state, config=config, cwd=tmp_path)
        await second.listening.addTimeout(30, reactor)
        for name, count, port, first_number in (("web", 3, made, 4), ("api", 2, api, 3)):
            _, view = await call(second, "GET", f"/services/{name}?wait=ready&timeout=45")
            assert (view["instances"], view["ready"]) == (count, count), view
            assert view["members"][0]["guid"] == f"{name}.{first_number}"
            answer = await treq.get(f"http://127.0.0.1:{port}/", timeout=10, reactor=reactor)
            assert json.loads(await answer.content())["guid"].startswith(f"{name}.")
    finally:
        for daemon in (first, second):
            if daemon is not None and not daemon.ended.called:
                workers = children_of(daemon.pid or 0)
                daemon.signal(signal.SIGTERM)
                await daemon.ended.addTimeout(30, reactor)
                await wait_gone(reactor, workers)
        children.release()
        addresses.release()
    assert children_of(os.getpid()) == []
