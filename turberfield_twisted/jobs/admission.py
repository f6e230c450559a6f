"""
Admission of starts: at most ``max_starting`` jobs are starting at once,
so that a burst of launches does not starve every start of CPU until
each times out; the others wait their turn, first come first served.

A job may also have to wait for others: one whose ``gate`` is shut (a
declared job whose ``requires`` are not all ready) waits, holding no
slot and blocking no one, until the gate opens.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from turberfield_twisted.jobs.job import Job

__all__ = ["Admission"]

class Admission:
    """
    Starting slots: at most ``slots()`` jobs hold one at once; the others
    wait in a queue, first come first served. A job for which ``gate(job)``
    is false waits apart (``blocked``) until it is true. Once ``closed``,
    no slot is given any more.
    """

    def __init__(self, slots: Callable[[], int], gate: Callable[[Job], bool]):
        self._slots = slots
        self._gate = gate
        self.closed = False
        self.starting: set[str] = set()
        self.waiting: deque[Job] = deque()
        self.blocked: list[Job] = []

    @property
    def slots(self) -> int:
        """How many jobs may be starting at once now."""
        return 0 if self.closed else self._slots()

    def request(self, job: Job) -> bool:
        """Give ``job`` a slot if its gate is open and a slot is free (True); else queue it."""
        if job in self.waiting or job in self.blocked:
            return False
        if not self._gate(job):
            self.blocked.append(job)
            return False
        if len(self.starting) < self.slots and not self.waiting:
            self.starting.add(job.guid)
            return True
        self.waiting.append(job)
        return False

    def leave(self, job: Job) -> None:
        """``job`` gives up its slot or its place in the queue."""
        self.starting.discard(job.guid)
        if job in self.waiting:
            self.waiting.remove(job)
        if job in self.blocked:
            self.blocked.remove(job)

    def next(self) -> Job | None:
        """The first waiting job, now given a slot, if a slot is free."""
        opened = [job for job in self.blocked if self._gate(job)]
        for job in opened:
            self.blocked.remove(job)
            self.waiting.append(job)
        if self.waiting and len(self.starting) < self.slots:
            job = self.waiting.popleft()
            self.starting.add(job.guid)
            return job
        return None
