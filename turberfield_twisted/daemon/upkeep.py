"""
Upkeep of ready jobs: liveness checks (:mod:`~turberfield_twisted.jobs.liveness`)
and recycling (by age: :mod:`~turberfield_twisted.jobs.recycle`; by
requests: the worker runtime posts :data:`~turberfield_twisted.contract.MAX_REQUESTS_EVENT`).

A job is recycled as an operator's restart is done, not as a crash: its
restart history is left alone (nothing counts toward ``max_restarts``). A
job of its own is stopped (SIGTERM: it drains) and started again; a
service's instance is replaced through the service's rollout, only it
(:class:`~turberfield_twisted.services.rollout.Rollout`'s ``replace``):
a new instance is started and ready before the old one drains, so no
request is lost. Instances asked while a rollout runs wait for its end.
Each recycling is an event (kind ``worker``, ``recycle``) with its reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from turberfield_twisted.config.operations import Operations, operations_for
from turberfield_twisted.contract import MAX_REQUESTS_EVENT
from turberfield_twisted.errors import NoFreePort, SpawnFailed, StoreFailed, UnknownService
from turberfield_twisted.jobs.job import EventKind, Job, JobEvent, JobState
from turberfield_twisted.jobs.liveness import Liveness
from turberfield_twisted.jobs.liveprobe import Prober, TreqProbe, WireProbe
from turberfield_twisted.jobs.recycle import RECYCLE_EVENT, MaxAge, Recycled, RecycledBy
from turberfield_twisted.worker.parent import HttpClient

if TYPE_CHECKING:
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.jobs.lifecycle import Lifecycle

__all__ = ["Upkeep"]


class Upkeep:
    """
    The liveness checks and recycling of ``initiator``'s jobs, whose
    ``lifecycle`` restarts them; liveness checks reach the workers through
    ``http`` (treq-like) if given, else on a kept connection per job.
    """

    log = Logger()

    def __init__(self, initiator: Initiator, lifecycle: Lifecycle, http: HttpClient | None):
        self._init = initiator
        self._lifecycle = lifecycle
        reactor = initiator.reactor
        #: The liveness checks of ready jobs.
        probe: Prober = WireProbe(reactor) if http is None else TreqProbe(http, reactor)
        self.liveness = Liveness(reactor, probe, initiator.workers.get, self.operations,
                                 lifecycle.over_limit, initiator.announce)
        #: The timers that recycle jobs by age.
        self.max_age = MaxAge(reactor, initiator.workers.get, self.operations, self.recycle)
        #: Per service, the instances to replace once no rollout runs.
        self._waiting: dict[str, list[str]] = {}
        self._unsubscribe = initiator.subscribe(self.observe)

    def operations(self, job: Job) -> Operations:
        """``job``'s liveness and recycling settings, as the config in force says."""
        return operations_for(self._init.settings, job.module, job.service)

    def observe(self, event: JobEvent) -> None:
        """Every job event: liveness and age timers follow the job's state; a worker's
        ``max_requests`` recycles it; a service's waiting instances are replaced."""
        self.liveness.observe(event)
        self.max_age.observe(event)
        if event.kind is EventKind.WORKER and event.name == MAX_REQUESTS_EVENT:
            self._asked(event)
        if event.service is not None and event.service in self._waiting:
            # A rollout's end is told before the service has let it go: replace after.
            self._init.reactor.callLater(0, self._replace, event.service)

    def _asked(self, event: JobEvent) -> None:
        job = self._init.workers.get(event.guid)
        if job is None:
            return
        data = event.data if isinstance(event.data, dict) else {}
        limit = self.operations(job).max_requests
        served = data.get("requests")
        self.recycle(job, Recycled(
            RecycledBy.MAX_REQUESTS,
            float(limit if limit is not None else data.get("max_requests") or 0),
            float(served) if isinstance(served, int | float) else 0.0))

    def recycle(self, job: Job, reason: Recycled) -> None:
        """Recycle ``job`` (ready) for ``reason``: see the module."""
        if job.state is not JobState.READY or self._init.stopping:
            return
        self.log.info("job {guid}: {reason}", guid=job.guid, reason=str(reason))
        self._init.announce(job.event(self._init.reactor.seconds(), EventKind.WORKER,
                                      RECYCLE_EVENT, reason.as_json()))
        if job.service is None:
            try:
                self._lifecycle.restart(job)
            except (NoFreePort, SpawnFailed) as exc:
                self.log.error("job {guid} could not be recycled: {error}", guid=job.guid,
                               error=str(exc))
            return
        waiting = self._waiting.setdefault(job.service, [])
        if job.guid not in waiting:
            waiting.append(job.guid)
        self._replace(job.service)

    def _replace(self, name: str) -> None:
        """Replace service ``name``'s waiting instances, unless a rollout runs."""
        try:
            group = self._init.services.group(name)
        except UnknownService:
            self._waiting.pop(name, None)
            return
        if group.rollout is not None:
            return  # its end is an event of the service: tried again then
        guids = [guid for guid in self._waiting.pop(name, [])
                 if guid in group.members and group.state_of(guid) is JobState.READY]
        if not guids:
            return
        try:
            group.roll_out(group.spec, replace=guids)
        except (NoFreePort, SpawnFailed, StoreFailed) as exc:
            self.log.error("service {service}: instances {guids} could not be recycled:"
                           " {error}", service=name, guids=guids, error=str(exc))

    def close(self) -> None:
        """The daemon stops: no more checks, timers or recycling."""
        self._unsubscribe()
        self.liveness.close()
        self.max_age.close(list(self._init.workers.values()))
        self._waiting.clear()
