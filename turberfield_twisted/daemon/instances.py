"""
The Initiator's job table as its services see it: :class:`Instances`
provides :class:`~turberfield_twisted.services.interfaces.IInstanceHost`,
so that the services layer, below the daemon, starts, stops and watches
its instances through the same lifecycle as every other job.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from configparser import DEFAULTSECT
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import implementer

from turberfield_twisted.config.names import GUID
from turberfield_twisted.errors import ServiceConflict
from turberfield_twisted.jobs.job import Job, JobEvent
from turberfield_twisted.launch.interfaces import ListenSocket
from turberfield_twisted.launch.protocol import ExitStatus
from turberfield_twisted.launch.router import LOCAL
from turberfield_twisted.services.interfaces import IInstanceHost
from turberfield_twisted.services.model import ServiceSpec

if TYPE_CHECKING:
    from turberfield_twisted.daemon.initiator import Initiator

__all__ = ["Instances"]


@implementer(IInstanceHost)
class Instances:
    """Service instances as jobs of ``initiator``."""

    def __init__(self, initiator: Initiator):
        self._init = initiator

    def admit(self, spec: ServiceSpec) -> None:
        """See :meth:`IInstanceHost.admit`."""
        init = self._init
        if spec.name == DEFAULTSECT or init.cfg.has_section(spec.name):
            raise ServiceConflict(f"service name {spec.name!r} is taken: a config section has"
                                  " it")
        init.admit(spec.module, dict(spec.overrides))
        module = init.settings.module(spec.module)
        remote = module is not None and module.launcher != LOCAL
        if remote and spec.listen is not None:
            raise ServiceConflict(f"listen can't be given for module {spec.module}: Slurm runs"
                                  " its workers on other hosts, and a socket can't span hosts"
                                  " (its instances are reached through the service relay)")
        if not remote and spec.listen is None:
            raise ServiceConflict("listen is required: the instances of a module that runs on"
                                  " this host share a socket (PORT, HOST:PORT or [IPV6]:PORT)")

    def start_instance(self, spec: ServiceSpec, guid: str,
                       sockets: Sequence[ListenSocket]) -> Job:
        """See :meth:`IInstanceHost.start_instance`."""
        tracker, overrides = self._init.admit(spec.module, dict(spec.overrides))
        job = Job(guid=guid, port=0, session=spec.session, module=spec.module,
                  token=secrets.token_urlsafe(32), overrides=overrides, tracker=tracker,
                  service=spec.name, sockets=tuple(sockets))
        return self._init.add(job)

    def stop_instance(self, guid: str) -> Deferred[ExitStatus | None]:
        """See :meth:`IInstanceHost.stop_instance`."""
        return self._init.stop(guid, operator=False)

    def job(self, guid: str) -> Job:
        """See :meth:`IInstanceHost.job`."""
        return self._init.job(guid)

    def guid_free(self, guid: str) -> bool:
        """See :meth:`IInstanceHost.guid_free`."""
        init = self._init
        return (GUID.accepts(guid) and guid not in init.workers and guid != DEFAULTSECT
                and not init.cfg.has_section(guid))

    def subscribe(self, observer: Callable[[JobEvent], None]) -> Callable[[], None]:
        """See :meth:`IInstanceHost.subscribe`."""
        return self._init.subscribe(observer)

    def announce(self, event: JobEvent) -> None:
        """See :meth:`IInstanceHost.announce`."""
        self._init.announce(event)

    def renew(self, module: str) -> Deferred[None]:
        """See :meth:`IInstanceHost.renew`."""
        return self._init.launcher.renew(module)

    def seconds(self) -> float:
        """See :meth:`IInstanceHost.seconds`."""
        return self._init.reactor.seconds()
