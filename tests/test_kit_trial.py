"""
The testing kit under trial (``make test`` runs this module with
``python -m twisted.trial --reactor=asyncio``; pytest leaves it alone):
trial fails a test that leaves a delayed call, a connection or a listening
port in the reactor, so these check that the kit leaves none.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from turberfield_twisted import ILauncher, IWorkerProcess
from turberfield_twisted.demo.hello import Hello
from turberfield_twisted.testing import (
    DEMO,
    FakeLauncher,
    ProcessesLeft,
    children_of,
    initiator_on_clock,
    pid_alive,
    running_initiator,
    running_worker,
    worker_harness,
)
from turberfield_twisted.testing.ports import WINDOW_ENV
from turberfield_twisted.testing.procs import idle
from turberfield_twisted.worker import Klein, WorkerContext

os.environ.setdefault(WINDOW_ENV, "27500-32767")  # as tests/conftest.py sets it

SECTION = {"greeting": "hello", "overridable": "greeting"}


class Later:
    """Answers ``GET /`` on a later turn of its reactor (no time passes), posting an event first."""

    app = Klein()

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx

    @app.route("/")
    async def later(self, request: Any) -> bytes:
        turned: Deferred[None] = Deferred()
        self.ctx.reactor.callLater(0, turned.callback, None)
        await turned
        assert self.ctx.parent is not None
        await self.ctx.parent.post_event("answered", {"late": True})
        return b"late"


class InMemory(TestCase):
    """The harness: the app as the runtime builds it, no process, no port."""

    async def test_routes_health_and_events(self) -> None:
        h = worker_harness(Hello, SECTION, guid="g1")
        health = await (await h.client.get("/health")).json()
        self.assertEqual(health, {"status": "ok", "guid": "g1"})
        self.assertEqual((await h.client.post("/notify", json={"n": 1})).code, 202)
        self.assertEqual(h.events, [("notified", {"n": 1})])

    async def test_an_answer_finished_later_needs_no_flush(self) -> None:
        h = worker_harness(Later)
        self.assertEqual(await (await h.client.get("/")).text(), "late")
        self.assertEqual(await h.events.next(), ("answered", {"late": True}))

    async def test_live_config_reaches_on_config(self) -> None:
        h = worker_harness(Hello, SECTION)
        await h.push_config({"greeting": "hej"})
        self.assertEqual(h.app.section["greeting"], "hej")
        self.assertEqual(json.loads(await (await h.client.get("/")).text())["config"]["greeting"],
                         "hej")


class InAProcess(TestCase):
    """The real-process fixture: nothing left in the reactor or the process table after."""

    async def test_a_worker_answers_posts_and_takes_config(self) -> None:
        async with running_worker(DEMO, SECTION) as worker:
            pid = worker.pid
            self.assertEqual((await worker.client.post("/notify", json=[1])).code, 202)
            self.assertEqual(await worker.events.next(), ("notified", [1]))
            await worker.push_config({"greeting": "hej"})
            body = await (await worker.client.get("/")).json()
            self.assertEqual(body["config"]["greeting"], "hej")
            self.assertEqual([job["guid"] for job in await worker.initiator.jobs()],
                             [worker.guid])
        self.assertFalse(pid is None or pid_alive(pid))
        self.assertEqual(children_of(os.getpid()), [])

    async def test_a_process_left_behind_fails_and_is_killed(self) -> None:
        stray = None
        with self.assertRaises(ProcessesLeft):
            async with running_initiator({DEMO: SECTION}):
                stray = idle()
        assert stray is not None
        self.assertEqual(stray.wait(timeout=10), -9)


class OnAClock(SynchronousTestCase):
    """The fakes: launch, crash, backoff and stop with time moved by hand."""

    def test_a_crash_restarts_and_a_stop_ends_it(self) -> None:
        world = initiator_on_clock({"init": {"child_port_min": 9000, "child_port_max": 9009},
                                    "my.worker": {"backoff_initial": 1, "jitter": 0}})
        guid = self.successResultOf(Deferred.fromCoroutine(world.init.launch("my.worker")))
        world.launcher.latest(guid).exit(1)
        world.clock.advance(0)
        self.assertEqual(world.states(guid)[-4:], ["backoff", "waiting", "starting", "ready"])
        world.launcher.latest(guid).exit(1)
        world.clock.advance(0.5)
        self.assertEqual(world.init.job(guid).state, "backoff")
        done = world.init.stop(guid)  # in backoff: it just ends, with its last status
        self.assertEqual(self.successResultOf(done).code, 1)
        self.assertEqual(world.states(guid)[-1], "exited")
        self.assertEqual(world.clock.getDelayedCalls(), [])

    def test_the_fakes_are_what_they_stand_for(self) -> None:
        launcher = FakeLauncher()
        self.assertTrue(verifyObject(ILauncher, launcher))
        worker = launcher.spawn("m", "g", 9000, b"", lambda stream, line: None)
        self.assertTrue(verifyObject(IWorkerProcess, worker))
