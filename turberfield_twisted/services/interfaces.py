"""
What the services layer needs of the daemon above it, as two small
interfaces: :class:`IInstanceHost` (the job table: start, stop and watch
the jobs that are a service's instances; the Initiator provides it) and
:class:`IServiceKeeper` (the durable store: what each service is, kept
across restarts). Services never import the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from zope.interface import Interface

from turberfield_twisted.jobs.job import Job, JobEvent
from turberfield_twisted.launch.interfaces import ListenSocket
from turberfield_twisted.launch.protocol import ExitStatus
from turberfield_twisted.services.model import ServiceSpec

__all__ = ["IInstanceHost", "IServiceKeeper", "KeptService"]

#: A service as the store keeps it: what it is, and the number its next instance takes.
KeptService = tuple[ServiceSpec, int]


class IInstanceHost(Interface):
    """The job table a service's instances live in."""

    def admit(spec: ServiceSpec) -> None:
        """
        Raise if ``spec`` can't run here: its name is a config section's
        (:class:`~turberfield_twisted.errors.ServiceConflict`), its module is not
        allowed (``UnknownModule``), its overrides are not allowed
        (``OverrideNotAllowed``, ``BadOverride``), it has no address for a
        module that runs here or one for a module Slurm runs (``ServiceConflict``).
        """

    def start_instance(spec: ServiceSpec, guid: str, sockets: Sequence[ListenSocket]) -> Job:
        """
        Start job ``guid`` of ``spec``'s module, session and overrides as an
        instance of service ``spec.name``, handed ``sockets`` at each start:
        as a launch does (it waits for a starting slot, is restarted as its
        module's policy says), but not kept in the store as a job of its own.
        Raise as a launch does (``NoFreePort``: no job is made;
        ``SpawnFailed``: it is ``failed``).
        """

    def stop_instance(guid: str) -> Deferred[ExitStatus | None]:
        """
        Drain and stop job ``guid`` (SIGTERM, SIGKILL after ``stop_timeout``);
        fire once it has ended.
        """

    def job(guid: str) -> Job:
        """The job ``guid``; raise ``UnknownJob``."""

    def guid_free(guid: str) -> bool:
        """Whether no job has ``guid`` and no config section is named so."""

    def subscribe(observer: Callable[[JobEvent], None]) -> Callable[[], None]:
        """Call ``observer`` with every job event; return an unsubscriber."""

    def announce(event: JobEvent) -> None:
        """Tell every observer of ``event`` (a service's own: web-hooks, the stream)."""

    def renew(module: str) -> Deferred[None]:
        """The next workers of ``module`` run its code as it is now (see ``ILauncher.renew``)."""

    def seconds() -> float:
        """The time now, on the daemon's clock."""


class IServiceKeeper(Interface):
    """Where services are kept across restarts of the daemon."""

    def keep_service(spec: ServiceSpec, next_instance: int) -> None:
        """Keep ``spec`` (and its counter); raise ``StoreFailed`` if it can't be."""

    def forget_service(name: str) -> None:
        """Forget service ``name``; raise ``StoreFailed`` if it can't be."""

    def kept_services() -> list[KeptService]:
        """Every service kept, in the order each was first kept."""
