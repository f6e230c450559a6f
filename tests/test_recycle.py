"""
Recycling by age on a Clock: when :class:`MaxAge` asks for a job to be
recycled (within its jitter window), and when it does not; the worker's
request count (:class:`~turberfield_twisted.worker.upkeep.Upkeep`) on a
Clock too. No processes, no sleeps.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from turberfield_twisted.config.operations import Operations
from turberfield_twisted.contract import MAX_REQUESTS_EVENT
from turberfield_twisted.jobs.job import Job, JobState
from turberfield_twisted.jobs.recycle import MaxAge, Recycled, RecycledBy
from turberfield_twisted.testing.fakes import FakeWorker
from turberfield_twisted.worker.upkeep import Upkeep

OPS = Operations(max_age=100.0, max_age_jitter=0.2)


def _rig(draw: float, ops: Operations = OPS) -> tuple[Clock, Job, MaxAge, list[Recycled]]:
    clock = Clock()
    job = Job(guid="g", port=28000, session=None, module="m", state=JobState.READY,
              process=FakeWorker("m", "g", 28000, b"", lambda stream, text: None), started=0.0)
    asked: list[Recycled] = []
    ages = MaxAge(clock, {"g": job}.get, lambda job: ops, lambda job, why: asked.append(why),
                  random=lambda: draw)
    return clock, job, ages, asked


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999])
def test_max_age_recycles_within_its_jitter_window(draw):
    """A ready job is recycled at max_age * (1 + jitter * draw): in [max_age, 1.2 * max_age)."""
    clock, job, ages, asked = _rig(draw)
    clock.advance(1)  # ready 1 s after its start: the age runs from the start
    ages.observe(job.event(clock.seconds()))
    due = 100 * (1 + 0.2 * draw)
    clock.advance(due - 1 - 0.001)
    assert asked == []
    clock.advance(0.001)
    (reason,) = asked
    assert reason.by is RecycledBy.MAX_AGE and 100 <= reason.value < 120
    assert reason.value == pytest.approx(due) and reason.limit == 100
    assert "max_age" not in job.calls


def test_leaving_ready_cancels_the_timer():
    """A job that stops (or crashes) before its age is not recycled, and leaves no timer."""
    clock, job, ages, asked = _rig(0.5)
    ages.observe(job.event(0))
    job.state = JobState.STOPPING
    ages.observe(job.event(1))
    clock.advance(1000)
    assert asked == [] and clock.getDelayedCalls() == [] and job.calls == {}


def test_no_max_age_no_timer():
    """Without max_age, nothing is scheduled."""
    clock, job, ages, asked = _rig(0.5, Operations())
    ages.observe(job.event(0))
    assert clock.getDelayedCalls() == [] and asked == []


class _Parent:
    def __init__(self) -> None:
        self.posted: list[tuple[str, Any]] = []

    async def post_event(self, name: str, data: Any = None) -> None:
        self.posted.append((name, data))


def test_the_runtime_asks_once_after_max_requests_not_counting_health_checks():
    """
    The worker counts the requests it serves, not /health nor its live_path; at the
    max_requests-th it posts max_requests to the daemon, once.
    """
    clock, parent, drained = Clock(), _Parent(), []
    section = {"max_requests": "3", "live_path": "/alive"}
    upkeep = Upkeep(clock, "g", section, parent, lambda: drained.append(True))  # type: ignore
    for path in (b"/", b"/health", b"/alive", b"/x", b"/_proactor/config"):
        upkeep.count(path)
    clock.advance(0)
    assert upkeep.served == 2 and parent.posted == []
    for _ in range(3):
        upkeep.count(b"/")
    clock.advance(0)
    assert parent.posted == [(MAX_REQUESTS_EVENT, {"requests": 3, "max_requests": 3})]
    assert drained == []


def test_without_a_daemon_the_runtime_drains_itself():
    """With no daemon to ask, the worker drains and exits at max_requests by itself."""
    clock, drained = Clock(), []
    upkeep = Upkeep(clock, "g", {"max_requests": "1"}, None, lambda: drained.append(True))
    upkeep.count(b"/")
    clock.advance(0)
    assert drained == [True]
