"""
Liveness end to end: real workers whose reactor gets stuck after they are
ready (:mod:`turberfield_twisted.testing.stuck`), checked by HTTP and by
watchdog pings on the ready fd, beside healthy ones of the same code and
settings. Every wait is on an event (an output line, a job event, a
number of passed checks), with a bound.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred

from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState, OutputLine
from turberfield_twisted.jobs.liveness import LIVENESS_EVENT, CheckBy
from turberfield_twisted.testing import running_initiator
from turberfield_twisted.testing.procs import wait_gone
from turberfield_twisted.testing.stuck import BLOCKING

STUCK = "turberfield_twisted.testing.stuck"

#: Checks every 0.5 s, each given 0.4 s (a loaded host answers late); 3 failed in a row
#: restart: a bound of 1.9 s.
LIVE = {"live_interval": 0.5, "live_timeout": 0.4, "live_failures": 3,
        "backoff_initial": 0, "overridable": "block_after"}
BOUND = 0.5 * 3 + 0.4

#: What the daemon's own delays on a shared, loaded machine may add to the bound: its
#: reactor runs the checks' timers, and reads the worker's line, a little late.
SLACK = 1.0


def first(init: Any, match: Any, timeout: float, reactor: Any, output: bool = False
          ) -> Deferred[Any]:
    """The first job event (or output line) for which ``match`` is true, within ``timeout``."""
    d: Deferred[Any] = Deferred()

    def seen(item: Any) -> None:
        if not d.called and match(item):
            unsubscribe()
            d.callback(item)

    unsubscribe = (init.subscribe_output if output else init.subscribe)(seen)
    return d.addTimeout(timeout, reactor)


async def _stuck_is_restarted(reactor: Any, watchdog: bool) -> None:
    async with running_initiator({STUCK: {**LIVE, "live_watchdog": watchdog}},
                                 stop_timeout=1) as running:
        init = running.init
        worker = await running.launch(STUCK)
        job = init.job(worker.guid)
        pid = job.pid
        blocked = first(init, lambda line: isinstance(line, OutputLine) and line.line == BLOCKING
                        and line.guid == job.guid, 30, reactor, output=True)
        failed = first(init, lambda e: e.kind is EventKind.WORKER and e.name == LIVENESS_EVENT,
                       30, reactor)
        again = first(init, lambda e: e.guid == job.guid and e.state is JobState.READY
                      and e.pid != pid, 60, reactor)
        line: OutputLine = await blocked
        event: JobEvent = await failed
        await again
        await wait_gone(reactor, [pid])
        reason = init.upkeep.liveness.failure(job.guid)
        assert reason is not None and reason.by is (CheckBy.WATCHDOG if watchdog else CheckBy.HTTP)
        assert reason.failures == 3
        assert job.last_error.startswith(str(reason)), job.last_error
        assert event.data["reason"] == "liveness" and event.data["failures"] == 3
        assert job.restarts == 1
        took = event.time - line.time
        print(f"\nstuck ({reason.by.value}): restarted {took:.2f}s after it blocked"
              f" (bound {BOUND:g}s): {job.last_error}")
        assert took <= BOUND + SLACK, (took, BOUND)


@pytest_twisted.ensureDeferred
async def test_a_worker_whose_reactor_is_stuck_is_restarted_with_the_reason(reactor):
    """
    A worker that blocks its reactor 2 s after it is ready fails its HTTP checks and is
    restarted, within live_interval * live_failures + live_timeout of blocking, its
    last_error naming the liveness failure and how long it had been failing.
    """
    await _stuck_is_restarted(reactor, watchdog=False)


@pytest_twisted.ensureDeferred
async def test_a_stuck_worker_stops_its_watchdog_pings_and_is_restarted(reactor):
    """
    With live_watchdog the runtime pings WATCHDOG=1 on the ready fd from its reactor: a
    worker that blocks its reactor stops pinging and is restarted, the reason naming it.
    """
    await _stuck_is_restarted(reactor, watchdog=True)


async def _healthy_is_kept(reactor: Any, watchdog: bool) -> None:
    async with running_initiator({STUCK: {**LIVE, "live_watchdog": watchdog}},
                                 stop_timeout=1) as running:
        init = running.init
        worker = await running.launch(STUCK, config={"block_after": 0})
        job = init.job(worker.guid)
        pid = job.pid
        seen: list[JobEvent] = []
        init.subscribe(lambda e: seen.append(e) if e.guid == job.guid else None)
        # 16 checks passed: 8 s, 16 intervals, four times the 1.9 s bound.
        await init.upkeep.liveness.passed(job.guid, 16).addTimeout(60, reactor)
        assert job.state is JobState.READY and job.pid == pid and job.restarts == 0
        assert seen == [] and init.upkeep.liveness.failure(job.guid) is None


@pytest_twisted.ensureDeferred
async def test_a_healthy_worker_is_never_restarted_by_its_checks(reactor):
    """
    A healthy worker with the same settings passes check after check (16: four times the
    bound) and is never restarted.
    """
    await _healthy_is_kept(reactor, watchdog=False)


@pytest_twisted.ensureDeferred
async def test_a_healthy_worker_pings_its_watchdog_and_is_left_alone(reactor):
    """A healthy worker's runtime pings its watchdog each half interval: it passes each check."""
    await _healthy_is_kept(reactor, watchdog=True)
