"""
The job table: every job by guid, who hears of their events and output, and the
questions asked of both (a job by guid, waiting for a state, whether the
jobs one requires are ready). The Initiator is one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from turberfield_twisted.errors import UnknownJob
from turberfield_twisted.jobs.job import ENDED, Job, JobEvent, JobState, OutputLine
from turberfield_twisted.jobs.observers import Observer, Observers

__all__ = ["JobTable"]

class JobTable:
    """Jobs by guid and the observers of their events; timeouts on ``reactor``."""

    reactor: IReactorTime

    def __init__(self) -> None:
        #: Every job, by guid (ended ones too, up to ``max_exited``).
        self.workers: dict[str, Job] = {}
        self._observers: Observers[JobEvent] = Observers()
        self._output: Observers[OutputLine] = Observers()

    def job(self, guid: str) -> Job:
        """The job with ``guid``; raise :class:`UnknownJob`."""
        try:
            return self.workers[guid]
        except KeyError:
            raise UnknownJob(guid) from None

    def forget_ended(self, keep: int,
                     forget: Callable[[str], None] = lambda guid: None) -> list[str]:
        """
        Drop all but the ``keep`` ended jobs that ended last (declared ones
        stay; one that never ended here, as one restored stopped, counts as
        the oldest); their guids. ``forget(guid)`` runs before each is
        dropped: if it raises, that job and the rest stay, and it propagates.
        """
        ended = sorted((job for job in self.workers.values()
                        if job.state in ENDED and not job.declared),
                       key=lambda job: -math.inf if job.ended is None else job.ended)
        gone = [job.guid for job in ended[: max(0, len(ended) - keep)]]
        for guid in gone:
            forget(guid)
            del self.workers[guid]
        return gone

    def worker_url(self, job: Job, path: str = "") -> str:
        """``http://HOST:PORT`` + ``path``: where ``job``'s worker listens."""
        return job.url(path)

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(event)`` on every :class:`JobEvent`; return an unsubscriber."""
        return self._observers.subscribe(observer)

    def subscribe_output(self, observer: Callable[[OutputLine], None]) -> Callable[[], None]:
        """Call ``observer(line)`` on every line a job's worker writes; return an unsubscriber."""
        return self._output.subscribe(observer)

    def wait_for_state(self, guid: str, states: Iterable[JobState | str],
                       timeout: float | None = None) -> Deferred[Job]:
        """
        Fire with the job once it is in one of ``states`` (at once if it is
        already); fail with ``twisted.internet.defer.TimeoutError`` after
        ``timeout`` seconds, if one is given.
        """
        job = self.job(guid)
        wanted = {JobState(state) for state in states}
        if job.state in wanted:
            return succeed(job)
        d = self._observers.entered(guid, wanted).addCallback(lambda _: job)
        return d if timeout is None else d.addTimeout(timeout, self.reactor)

    def required_ready(self, job: Job) -> bool:
        """Whether every job that ``job`` requires is ``ready``."""
        return all(getattr(self.workers.get(name), "state", None) is JobState.READY
                   for name in job.requires)
