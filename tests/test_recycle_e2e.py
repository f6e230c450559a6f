"""
Recycling end to end, real workers: by age (``max_age``, within its
jitter window) and by requests (``max_requests``: a job of its own is
restarted; a service's instance is replaced through a rollout, a new one
ready before the old drains, under a client loop that loses nothing).
Neither counts as a failure. Every wait is on an event, with a bound.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from test_services_e2e import LoadLoop, all_ready, loop_progress, until
from twisted.internet.defer import Deferred

from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState
from turberfield_twisted.jobs.recycle import RECYCLE_EVENT
from turberfield_twisted.services.model import ServiceSpec
from turberfield_twisted.testing import running_initiator
from turberfield_twisted.testing.configs import DEMO, DEMO_SECTION
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import wait_gone

#: What the daemon's own delays on a shared, loaded machine may add to a timer.
SLACK = 1.0


def recycled(init: Any, guid: str | None, reactor: Any, timeout: float = 60
             ) -> Deferred[JobEvent]:
    """The next ``recycle`` event (of job ``guid``, if given), within ``timeout``."""
    d: Deferred[JobEvent] = Deferred()

    def seen(event: JobEvent) -> None:
        if (not d.called and event.kind is EventKind.WORKER and event.name == RECYCLE_EVENT
                and guid in (None, event.guid)):
            unsubscribe()
            d.callback(event)

    unsubscribe = init.subscribe(seen)
    return d.addTimeout(timeout, reactor)


def ready_again(init: Any, guid: str, pid: int, reactor: Any) -> Deferred[Any]:
    """Fire once job ``guid`` is ready with a pid other than ``pid``."""
    d: Deferred[Any] = Deferred()

    def seen(event: JobEvent) -> None:
        if not d.called and event.guid == guid and event.state is JobState.READY and (
                event.pid != pid):
            unsubscribe()
            d.callback(event)

    unsubscribe = init.subscribe(seen)
    return d.addTimeout(60, reactor)


@pytest_twisted.ensureDeferred
async def test_max_age_restarts_a_job_within_its_jitter_window_not_as_a_failure(reactor):
    """
    A job with max_age 1.5 s and max_age_jitter 0.2 is restarted once it is 1.5 to 1.8 s
    old: an event says why, and its restart count and history are untouched.
    """
    section = {**DEMO_SECTION, "max_age": 1.5, "max_age_jitter": 0.2}
    async with running_initiator({DEMO: section}) as running:
        init = running.init
        worker = await running.launch(DEMO)
        job = init.job(worker.guid)
        pid = job.pid
        started = job.started
        event = await recycled(init, job.guid, reactor)
        await ready_again(init, job.guid, pid, reactor)
        await wait_gone(reactor, [pid])
        assert event.data["reason"] == "max_age" and event.data["limit"] == 1.5
        age = event.time - started
        print(f"\nmax_age 1.5 s, jitter 0.2: recycled at {age:.3f} s")
        assert 1.5 <= age <= 1.8 + SLACK, age
        assert job.restarts == 0 and not job.tracker.restarts


@pytest_twisted.ensureDeferred
async def test_max_requests_restarts_a_job_of_its_own_cleanly(reactor):
    """
    A job with max_requests 5 asks to be recycled at its 5th request (health checks are
    not counted): it is restarted (drained, exit 0), not counted as a failure.
    """
    async with running_initiator({DEMO: {**DEMO_SECTION, "max_requests": 5}}) as running:
        init = running.init
        worker = await running.launch(DEMO)
        job = init.job(worker.guid)
        pid = job.pid
        waiting = recycled(init, job.guid, reactor)
        exited = init.wait_for_state(job.guid, [JobState.EXITED], 60)
        for _ in range(5):
            response = await worker.client.get("/")
            assert response.code == 200
            await response.content()
        event = await waiting
        old = await exited
        assert old.status.code == 0
        await ready_again(init, job.guid, pid, reactor)
        await wait_gone(reactor, [pid])
        assert event.data == {"reason": "max_requests", "limit": 5, "value": 5}
        assert job.restarts == 0 and not job.tracker.restarts


@pytest.fixture
def address() -> Any:
    held = free_ports(10)
    yield held.low
    held.release()


@pytest_twisted.ensureDeferred
async def test_max_requests_on_a_two_instance_service_loses_no_request(reactor, address):
    """
    Under a client loop, each instance of a 2-instance service with max_requests 300 is
    replaced through a rollout of that instance (a new one ready before it drains): both
    first instances are replaced, each with an event, and not one request fails.
    """
    config = {"init": {"max_instances": 16, "stop_timeout": 10},
              DEMO: {**DEMO_SECTION, "max_requests": 300}}
    async with running_initiator(config) as running:
        init = running.init
        group = init.services.create(ServiceSpec(name="web", module=DEMO, host="127.0.0.1",
                                                 port=address, instances=2))
        await until(init, "web", all_ready, reactor)
        events: list[JobEvent] = []
        init.subscribe(lambda e: events.append(e) if e.name == RECYCLE_EVENT else None)
        loop = LoadLoop.start(reactor, address, "--rate", "300", "--count", "100000",
                              "--seconds", "200", "--progress", "100")
        try:
            await until(init, "web", lambda g: all_ready(g) and not {"web.1", "web.2"} & set(
                g.members), reactor, timeout=150)
            await loop.answered(loop_progress(loop) + 200, reactor)
        finally:
            result = await loop.result(reactor)
        print(f"\nmax_requests 300 on 2 instances: {result['answered']} answered,"
              f" {result['failed']} failed, {result['retried']} retried,"
              f" {len(events)} recycled, instances now {group.members}")
        assert result["failed"] == 0, result
        assert result["sent"] == result["answered"]
        assert {"web.1", "web.2"} <= {e.guid for e in events}
        assert all(e.data["reason"] == "max_requests" for e in events)
        assert all(init.job(g).restarts == 0 for g in group.members)
        assert init.job("web.1").state is JobState.EXITED
