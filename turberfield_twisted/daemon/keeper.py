"""
What an operator wants of each job and each service, kept in the durable
store.

The Initiator tells its :class:`Keeper` of every launch, stop, restart and
config change before it acts on it, and of each job it forgets; its
services tell it of each one made, scaled, rolled out or removed (it is
their :class:`~turberfield_twisted.services.interfaces.IServiceKeeper`).
The keeper writes it to the :class:`~turberfield_twisted.daemon.store.Store`
(if there is one), so that a restarted daemon restores each job and
service as its operator left it. The state a job is in is not kept: only
what was asked. A service's instances are not kept as jobs: the service
starts its count of them afresh. A write the store refuses raises
:class:`StoreFailed` and the change is not made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs
from zope.interface import implementer

from turberfield_twisted.daemon.store import Store
from turberfield_twisted.daemon.store_records import JobRecord, ServiceRecord
from turberfield_twisted.errors import CannotForget, StoreFailed
from turberfield_twisted.jobs.job import ENDED, Job, Wanted
from turberfield_twisted.jobs.table import JobTable
from turberfield_twisted.services.interfaces import IServiceKeeper, KeptService
from turberfield_twisted.services.model import ServiceSpec

__all__ = ["Keeper", "forget_ended"]


@implementer(IServiceKeeper)
@attrs.define
class Keeper:
    """Writes each job's and service's record to ``store``; with no store, keeps nothing."""

    store: Store | None = None
    #: Called with each guid forgotten (logs on disk remove its files).
    forgotten: list[Callable[[str], None]] = attrs.field(factory=list)

    def keep(self, job: Job, overrides: Mapping[str, str] | None = None) -> None:
        """
        Keep ``job`` as it is now (with ``overrides`` in place of its own,
        if given; a service's instance is not kept); raise
        :class:`StoreFailed` if it can't be.
        """
        if self.store is not None and job.service is None:
            self.store.put_job(JobRecord(
                job.guid, job.module, job.session,
                job.overrides if overrides is None else overrides, job.wanted.value,
                job.declared, job.port))

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
        for forgotten in self.forgotten:
            forgotten(guid)

    # -- services (IServiceKeeper) -------------------------------------------

    def keep_service(self, spec: ServiceSpec, next_instance: int) -> None:
        """See :meth:`IServiceKeeper.keep_service`."""
        if self.store is not None:  # no shared socket: host "" and port 0
            self.store.put_service(ServiceRecord(
                spec.name, spec.module, spec.session, spec.overrides, spec.host or "",
                spec.port or 0,
                spec.instances, spec.surge, spec.max_unavailable, spec.declared, next_instance))

    def forget_service(self, name: str) -> None:
        """See :meth:`IServiceKeeper.forget_service`."""
        if self.store is not None:
            self.store.forget_service(name)

    def kept_services(self) -> list[KeptService]:
        """See :meth:`IServiceKeeper.kept_services`."""
        if self.store is None:
            return []
        return [(ServiceSpec(name=r.name, module=r.module, host=r.host or None,
                             port=r.port if r.host else None,
                             instances=r.instances, surge=r.surge,
                             max_unavailable=r.max_unavailable, session=r.session,
                             overrides=r.overrides, declared=r.declared), r.next_instance)
                for r in self.store.services()]


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
