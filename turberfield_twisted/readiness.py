"""
Readiness: how the daemon learns that a new worker answers.

:class:`HealthProbe` asks a worker's ``GET /health`` until it answers 200
in its own name; the lifecycle cancels the wait when the job ends or is
asked to stop.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from .errors import JobExited, NotReady
from .job import Job, JobState

__all__ = ["HealthProbe", "answer_is_from", "only_ready"]


def answer_is_from(guid: str, body: bytes) -> bool:
    """
    Whether a health answer may be from job ``guid``: false only if it is
    JSON naming another guid (the worker runtime names its own). Another
    initiator's worker may hold the port this one thought free.
    """
    try:
        named = json.loads(body).get("guid", guid)
    except (ValueError, AttributeError):
        return True
    return bool(named == guid)


@attrs.frozen
class HealthProbe:
    """
    Poll ``GET /health`` through ``http`` (a treq-like client) on
    ``reactor``: first at once, then after ``first`` seconds, each pause
    ``growth`` times the last, at most ``cap``; each try gets ``timeout``.
    """

    http: Any
    reactor: Any
    first: float = 0.02
    growth: float = 1.5
    cap: float = 0.25
    timeout: float = 1.0

    def wait(self, guid: str, url: str) -> Deferred[None]:
        """Fire once the worker at ``url`` answers 200 as ``guid``; cancel to give up."""
        return Deferred.fromCoroutine(self._poll(guid, url))

    async def _poll(self, guid: str, url: str) -> None:
        delay = self.first
        while True:
            if await self._answers(guid, url):
                return
            await deferLater(self.reactor, delay, lambda: None)
            delay = min(delay * self.growth, self.cap)

    async def _answers(self, guid: str, url: str) -> bool:
        try:
            response = await self.http.get(url, timeout=self.timeout, reactor=self.reactor)
            body = await response.content()
        except CancelledError:
            raise  # the wait was given up
        except Exception:  # not listening yet: the probe goes on
            return False
        return bool(response.code == 200 and answer_is_from(guid, body))


def only_ready(guid: str, waiting: Deferred[Job]) -> Deferred[Job]:
    """
    ``waiting`` (for job ``guid`` to be ready or to end), as a Deferred that
    fires with the job only if it is ``ready``: else it fails with
    :class:`JobExited`, or :class:`NotReady` if the wait timed out.
    """

    def check(job: Job) -> Job:
        if job.state is not JobState.READY:
            raise JobExited(guid, job.status, job.last_error)
        return job

    def explain(failure: Failure) -> Failure:
        if failure.check(CancelledError, DeferredTimeout):
            raise NotReady(f"job {guid} not ready in time")
        return failure

    return waiting.addCallbacks(check, explain)
