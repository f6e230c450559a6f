"""
Recycling by age: :class:`MaxAge` asks for a job to be recycled once it
has run ``max_age`` seconds, later by up to ``max_age_jitter`` of that
(drawn afresh for each run, so that jobs started together are not all
recycled together): one timer per ready job on the injected reactor,
kept in the job's ``calls`` as ``max_age`` (so the lifecycle cancels it
when the job's process ends) and cancelled as the job leaves ``ready``.

What recycling does (restart a job, or replace a service's instance
through a rollout: nothing counted as a failure) is the caller's
``recycle(job, reason)``; :class:`Recycled` is the reason, typed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import StrEnum

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from turberfield_twisted.config.operations import Operations
from turberfield_twisted.jobs.job import EventKind, Job, JobEvent, JobState

__all__ = ["RECYCLE_EVENT", "MaxAge", "Recycled", "RecycledBy"]

#: The name of the event emitted (kind ``worker``, ``data`` the reason's JSON) as a job
#: is recycled.
RECYCLE_EVENT = "recycle"

#: The name of a job's timer (in ``job.calls``) that recycles it by age.
_TIMER = "max_age"


class RecycledBy(StrEnum):
    """What recycles a job."""

    MAX_AGE = "max_age"  #: it has run ``max_age`` seconds (and its jitter)
    MAX_REQUESTS = "max_requests"  #: its runtime has served ``max_requests`` requests


@attrs.frozen
class Recycled:
    """Why a job is recycled: ``by`` what, past ``limit``, having reached ``value``."""

    by: RecycledBy
    limit: float
    value: float

    def __str__(self) -> str:
        unit = "s" if self.by is RecycledBy.MAX_AGE else " requests"
        return f"recycled: {self.by.value} {self.limit:g}{unit} reached ({self.value:g}{unit})"

    def as_json(self) -> dict[str, object]:
        """As the ``recycle`` event's data gives it."""
        return {"reason": self.by.value, "limit": self.limit, "value": round(self.value, 3)}


class MaxAge:
    """
    Recycle each ready job of ``job(guid)`` whose ``operations(job)`` set a
    ``max_age`` once it is that old (its jitter drawn by ``random``), by
    ``recycle(job, reason)``. :meth:`observe` is subscribed to job events.
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime, job: Callable[[str], Job | None],
                 operations: Callable[[Job], Operations],
                 recycle: Callable[[Job, Recycled], None],
                 random: Callable[[], float] = random.random):
        self._reactor = reactor
        self._job = job
        self._operations = operations
        self._recycle = recycle
        self._random = random

    def observe(self, event: JobEvent) -> None:
        """A job event: its timer is set as it is ready, and cancelled as it leaves ready."""
        if event.kind is not EventKind.STATE:
            return
        job = self._job(event.guid)
        if job is None:
            return
        if event.state is JobState.READY:
            self.arm(job)
        else:
            self._cancel(job)

    def due(self, job: Job) -> float | None:
        """
        How long after its start ``job`` is recycled, this run (drawn once:
        None if it has no ``max_age``): in ``[max_age, max_age * (1 + max_age_jitter))``.
        """
        ops = self._operations(job)
        if ops.max_age is None:
            return None
        return ops.max_age * (1 + ops.max_age_jitter * self._random())

    def arm(self, job: Job) -> None:
        """Set ``job``'s timer (it is ready) for its age at :meth:`due`."""
        self._cancel(job)
        age = self.due(job)
        if age is None:
            return
        started = job.started if job.started is not None else self._reactor.seconds()
        delay = max(0.0, started + age - self._reactor.seconds())
        process = job.process
        job.calls[_TIMER] = self._reactor.callLater(delay, self._old, job, process)

    def _old(self, job: Job, process: object) -> None:
        job.calls.pop(_TIMER, None)
        if job.process is not process or job.state is not JobState.READY:
            return
        ops = self._operations(job)
        started = job.started if job.started is not None else self._reactor.seconds()
        reason = Recycled(RecycledBy.MAX_AGE, ops.max_age or 0.0,
                          self._reactor.seconds() - started)
        self.log.info("job {guid}: {reason}", guid=job.guid, reason=str(reason))
        self._recycle(job, reason)

    def _cancel(self, job: Job) -> None:
        call = job.calls.pop(_TIMER, None)
        if call is not None and call.active():
            call.cancel()

    def close(self, jobs: list[Job]) -> None:
        """Cancel the timers of ``jobs`` (the daemon stops)."""
        for job in jobs:
            self._cancel(job)
