"""
One service: :class:`ServiceGroup` holds its spec, its shared socket and
its instances (jobs named ``NAME.N``, N counting up from 1 and never used
twice, across restarts of the daemon too), starts and drains them, and
scales them live. Its rollouts are :class:`~.rollout.Rollout`'s work.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from turberfield_twisted.errors import ServiceConflict, SpawnFailed, UnknownJob
from turberfield_twisted.jobs.job import EventKind, Job, JobEvent, JobState
from turberfield_twisted.launch.protocol import ExitStatus
from turberfield_twisted.services.interfaces import IInstanceHost, IServiceKeeper
from turberfield_twisted.services.listener import SharedSocket
from turberfield_twisted.services.model import RolloutView, ServiceEvent, ServiceSpec
from turberfield_twisted.services.rollout import Rollout

__all__ = ["ServiceGroup"]


@attrs.define(eq=False)
class ServiceGroup:
    """
    Service ``spec.name``: its instances share ``socket`` (None: a Slurm
    service's instances each listen on their own node); they are jobs of
    ``host``'s table; ``keeper`` keeps the spec and the number the next
    instance takes (``next_instance``).
    """

    log = Logger()

    spec: ServiceSpec
    socket: SharedSocket | None
    _host: IInstanceHost = attrs.field(alias="host")
    _keeper: IServiceKeeper = attrs.field(alias="keeper")
    next_instance: int = 1
    #: Its instances' guids, oldest first.
    members: list[str] = attrs.field(factory=list)
    #: The rollout that runs, if one does.
    rollout: Rollout | None = None
    #: How the last rollout that ended went.
    last_rollout: RolloutView | None = None
    #: Why its last instance could not be started, if one could not.
    last_error: str | None = None

    @property
    def name(self) -> str:
        """The service's name."""
        return self.spec.name

    # -- instances ---------------------------------------------------------

    def jobs(self) -> list[Job]:
        """Its instances, oldest first."""
        found = []
        for guid in self.members:
            try:
                found.append(self._host.job(guid))
            except UnknownJob:
                pass
        return found

    def ready(self) -> list[Job]:
        """Its instances that are ready."""
        return [job for job in self.jobs() if job.state is JobState.READY]

    def state_of(self, guid: str) -> JobState | None:
        """The state of job ``guid`` (None: no such job any more)."""
        try:
            return self._host.job(guid).state
        except UnknownJob:
            return None

    def start_instance(self, spec: ServiceSpec) -> str:
        """
        Start a new instance of ``spec`` (the service's, or a rollout's);
        its guid. Raise as a launch does (``NoFreePort``: no instance is
        made; ``SpawnFailed``: it is one, ``failed``) or ``StoreFailed``.
        """
        guid = self._new_guid()
        try:
            shared = [self.socket.handed()] if self.socket is not None else []
            self._host.start_instance(spec, guid, shared)
        except SpawnFailed:
            self.members.append(guid)  # it is in the table, failed
            raise
        self.members.append(guid)
        self.log.info("service {service}: instance {guid} started", service=self.name,
                      guid=guid)
        return guid

    def _new_guid(self) -> str:
        """The next instance's guid (kept first: a number is never taken twice)."""
        number = self.next_instance
        while not self._host.guid_free(f"{self.name}.{number}"):
            number += 1
        self._keeper.keep_service(self.spec, number + 1)
        self.next_instance = number + 1
        return f"{self.name}.{number}"

    def stop_instance(self, guid: str) -> Deferred[ExitStatus | None]:
        """
        Drain and stop instance ``guid``: it is no longer one of the service's
        (one the job table has forgotten, ended long ago, is only dropped).
        """
        if guid in self.members:
            self.members.remove(guid)
        try:
            stopped = self._host.stop_instance(guid)
        except UnknownJob:
            return succeed(None)
        self.log.info("service {service}: instance {guid} drained", service=self.name,
                      guid=guid)
        return stopped

    def scale(self, count: int) -> tuple[int, int]:
        """
        Run ``count`` instances from now on (kept first): new ones are
        started, or the newest drained; ``(before, after)``. Raise
        :class:`ServiceConflict` while a rollout runs, ``StoreFailed``
        (nothing changed), or as :meth:`start_instance` does.
        """
        if self.rollout is not None:
            raise ServiceConflict(f"a rollout of service {self.name} is running: scale it"
                                  " once it is done")
        spec = attrs.evolve(self.spec, instances=count)
        self._keeper.keep_service(spec, self.next_instance)
        before, self.spec = len(self.members), spec
        while len(self.members) > count:
            self.stop_instance(self.members[-1])
        self.fill()
        return before, count

    def fill(self) -> None:
        """Start instances until it has as many as its spec says (raise as start_instance)."""
        while len(self.members) < self.spec.instances:
            try:
                self.start_instance(self.spec)
            except Exception as exc:
                self.last_error = str(exc)
                raise
        self.last_error = None

    # -- rollouts ----------------------------------------------------------

    def roll_out(self, target: ServiceSpec, replace: list[str] | None = None) -> Rollout:
        """
        Replace every instance (or those of ``replace``) with one of
        ``target`` (see :class:`Rollout`); raise :class:`ServiceConflict`
        if a rollout runs.
        """
        if self.rollout is not None:
            raise ServiceConflict(f"a rollout of service {self.name} is running")
        rollout = self.rollout = Rollout(self, target, self._host, self._rolled_out, replace)
        rollout.start()
        return rollout

    def _rolled_out(self, rollout: Rollout) -> None:
        """``rollout`` has ended: done (its spec is the service's now) or failed."""
        if self.rollout is rollout:
            self.rollout = None
        self.last_rollout = rollout.view()
        if rollout.succeeded:
            self.spec = rollout.target
            try:
                self._keeper.keep_service(self.spec, self.next_instance)
            except Exception as exc:
                self.log.error("service {service}: its new spec could not be kept: {error}",
                               service=self.name, error=str(exc))

    # -- what is shown -----------------------------------------------------

    def announce(self, what: ServiceEvent, data: Any = None) -> None:
        """Tell observers (web-hooks, the event stream, metrics) ``what`` happened to it."""
        self._host.announce(JobEvent(
            kind=EventKind.SERVICE, name=what.value, guid=self.name, module=self.spec.module,
            time=self._host.seconds(), state=None, data=data, service=self.name))

    def view(self) -> dict[str, Any]:
        """The service as ``GET /services/{name}`` shows it, less its instances' records."""
        running = self.rollout.view() if self.rollout is not None else self.last_rollout
        return {**self.spec.as_json(), "ready": len(self.ready()),
                "rollout": running.as_json() if running is not None else None,
                "last_error": self.last_error}
