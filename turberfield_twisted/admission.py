"""
Admission of starts: at most ``max_starting`` jobs are starting at once,
so that a burst of launches does not starve every start of CPU until
each times out; the others wait their turn, first come first served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .job import Job

__all__ = ["Admission"]


class Admission:
    """
    Starting slots: at most ``slots()`` jobs hold one at once; the others
    wait in a queue, first come first served. Once ``closed``, no slot is
    given any more.
    """

    def __init__(self, slots: Callable[[], int]):
        self._slots = slots
        self.closed = False
        self.starting: set[str] = set()
        self.waiting: deque[Job] = deque()

    @property
    def slots(self) -> int:
        """How many jobs may be starting at once now."""
        return 0 if self.closed else self._slots()

    def request(self, job: Job) -> bool:
        """Give ``job`` a slot if one is free (True); else queue it."""
        if len(self.starting) < self.slots and not self.waiting:
            self.starting.add(job.guid)
            return True
        if job not in self.waiting:
            self.waiting.append(job)
        return False

    def leave(self, job: Job) -> None:
        """``job`` gives up its slot or its place in the queue."""
        self.starting.discard(job.guid)
        if job in self.waiting:
            self.waiting.remove(job)

    def next(self) -> Job | None:
        """The first waiting job, now given a slot, if a slot is free."""
        if self.waiting and len(self.starting) < self.slots:
            job = self.waiting.popleft()
            self.starting.add(job.guid)
            return job
        return None
