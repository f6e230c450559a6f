"""
What an operator wants of each job, kept in the durable store.

The Initiator tells its :class:`Keeper` of every launch, stop, restart and
config change before it answers, and of each job it forgets; the keeper
writes it to the :class:`~turberfield_twisted.daemon.store.Store` (if there is
one), so that a restarted daemon restores each job as its operator left
it. The state a job is in is not kept: only what was asked.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from turberfield_twisted.daemon.store import JobRecord, Store
from turberfield_twisted.errors import CannotForget, StoreFailed
from turberfield_twisted.jobs.job import ENDED, Job, Wanted
from turberfield_twisted.jobs.table import JobTable

__all__ = ["Keeper", "forget_ended"]

@attrs.define
class Keeper:
    """Writes each job's record to ``store``; with no store, keeps nothing."""

    store: Store | None = None

    def keep(self, job: Job) -> None:
        """Keep ``job`` as it is now; raise :class:`StoreFailed` if it can't be."""
        if self.store is not None:
            self.store.put_job(JobRecord(job.guid, job.module, job.session, job.overrides,
                                         job.wanted.value, job.declared, job.port))

    def want(self, job: Job, wanted: Wanted) -> None:
        """The operator wants ``job`` ``wanted``: kept first (else StoreFailed, nothing changed)."""
        before, job.wanted = job.wanted, wanted
        try:
            self.keep(job)
        except StoreFailed:
            job.wanted = before
            raise

    def kept(self) -> list[JobRecord]:
        """Every job kept, in the order they were first kept (none without a store)."""
        return self.store.jobs() if self.store is not None else []

    def forget(self, guid: str) -> None:
        """The job ``guid`` is gone from the table: forget it too."""
        if self.store is not None:
            self.store.forget_job(guid)


def forget_ended(table: JobTable, guid: str, forget_kept: Callable[[str], None]) -> Job:
    """
    Forget ended job ``guid`` of ``table``, as its operator asks: from the
    store first (``forget_kept``), then the table; return it. Raise
    :class:`~.errors.UnknownJob`, :class:`CannotForget` (it has not
    ended, or a ``[job:NAME]`` section declares it) or :class:`StoreFailed`
    (nothing is changed).
    """
    job = table.job(guid)
    if job.declared:
        raise CannotForget(f"job {guid} is declared in the config: remove its [job:{guid}]"
                           " section and reload to forget it")
    if job.state not in ENDED:
        raise CannotForget(f"job {guid} is {job.state.value}: stop it first, then forget it")
    forget_kept(guid)
    del table.workers[guid]
    return job
