"""
Every service of a daemon: :class:`Services` makes them (from the API,
from ``[service:NAME]`` sections, from the store at start), scales them,
rolls them out, removes them, reconciles the declared ones on a reload,
and closes their sockets once the daemon has stopped their instances.

Each change is checked whole before anything is done (a bad name, count
or module, an address another process holds, a rollout already running:
nothing changes), and kept in the store before it is answered; once the
daemon stops, every change is refused (``DaemonStopping``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from turberfield_twisted.config.names import SERVICE_NAME
from turberfield_twisted.config.services import DeclaredService, numbers_problem
from turberfield_twisted.config.settings import Settings
from turberfield_twisted.errors import (
    DaemonStopping,
    Invalid,
    NoFreePort,
    OverMaxInstances,
    ServiceConflict,
    SpawnFailed,
    StoreFailed,
    UnknownJob,
    UnknownService,
)
from turberfield_twisted.jobs.job import Job, JobState
from turberfield_twisted.services.group import ServiceGroup
from turberfield_twisted.services.interfaces import IInstanceHost, IServiceKeeper
from turberfield_twisted.services.listener import SharedSocket
from turberfield_twisted.services.model import RolloutView, ServiceEvent, ServiceSpec

__all__ = ["Services", "declared_spec"]

#: What keeps an instance from starting: logged, shown as the service's last error.
_CANNOT_START = (NoFreePort, SpawnFailed, StoreFailed)


def declared_spec(declared: DeclaredService) -> ServiceSpec:
    """The spec of a ``[service:NAME]`` section."""
    return ServiceSpec(name=declared.name, module=declared.module, host=declared.host,
                       port=declared.port, instances=declared.instances,
                       surge=declared.surge, max_unavailable=declared.max_unavailable,
                       session=declared.session, overrides=declared.overrides, declared=True,
                       spread=declared.spread)


class Services:
    """
    The services whose instances are jobs of ``host``, kept by ``keeper``;
    ``settings()`` is the config in force (``max_instances``, the declared
    services).
    """

    log = Logger()

    def __init__(self, host: IInstanceHost, keeper: IServiceKeeper,
                 settings: Callable[[], Settings]):
        self._host = host
        self._keeper = keeper
        self._settings = settings
        #: Every service, by name.
        self.groups: dict[str, ServiceGroup] = {}
        self._closed = False

    def _refuse_while_closed(self) -> None:
        if self._closed:
            raise DaemonStopping()

    def group(self, name: str) -> ServiceGroup:
        """Service ``name``; raise :class:`UnknownService`."""
        try:
            return self.groups[name]
        except KeyError:
            raise UnknownService(name) from None

    def of_job(self, job: Job) -> ServiceGroup | None:
        """The service ``job`` is an instance of, if it is one."""
        return self.groups.get(job.service) if job.service is not None else None

    # -- checks ------------------------------------------------------------

    def check(self, spec: ServiceSpec) -> None:
        """
        Raise unless ``spec`` makes a service: :class:`Invalid` for a bad
        name or numbers, :class:`OverMaxInstances` for too many,
        :class:`ServiceConflict` for a name taken (a service's, or a config
        section's), and as the host's ``admit`` does for its module and
        overrides.
        """
        if not SERVICE_NAME.accepts(spec.name):
            raise Invalid("name must be 1 to 48 letters, digits, '_' or '-', starting with a"
                          " letter or digit")
        if spec.name in self.groups:
            raise ServiceConflict(f"there is a service {spec.name} already")
        self.check_numbers(spec.instances, spec.surge, spec.max_unavailable)
        self._host.admit(spec)

    def check_numbers(self, instances: int, surge: int, max_unavailable: int) -> None:
        """
        Raise :class:`Invalid` unless these numbers make a service (see
        ``numbers_problem``), :class:`OverMaxInstances` for more instances
        than the daemon's ``max_instances``.
        """
        most = self._settings().initiator.max_instances
        problem = numbers_problem(instances, surge, max_unavailable, most)
        if problem is not None:
            error = OverMaxInstances if instances > most else Invalid
            raise error(f"{problem[0]} {problem[1]}")

    # -- changes -----------------------------------------------------------

    def create(self, spec: ServiceSpec, next_instance: int = 1) -> ServiceGroup:
        """
        Make service ``spec``: checked, its socket bound, kept, then its
        instances started. Raise as :meth:`check` does,
        :class:`ServiceConflict` if its address can't be bound, or
        ``StoreFailed``: nothing is made. An instance that can't be started
        is logged and shown as the service's ``last_error``.
        """
        self._refuse_while_closed()
        self.check(spec)
        sock = (SharedSocket(spec.name, spec.host, spec.port)
                if spec.host is not None and spec.port is not None else None)
        try:
            self._keeper.keep_service(spec, next_instance)
        except StoreFailed:
            if sock is not None:
                sock.close()
            raise
        group = ServiceGroup(spec, sock, host=self._host, keeper=self._keeper,
                             next_instance=next_instance)
        self.groups[spec.name] = group
        self.log.info("service {service} listens on {listen}: {count} instances of {module}",
                      service=spec.name, listen=spec.listen or "its instances' nodes (relay"
                      f" only, spread {spec.spread})", count=spec.instances, module=spec.module)
        group.announce(ServiceEvent.CREATED, {"listen": spec.listen,
                                              "instances": spec.instances})
        self._fill(group)
        return group

    def _fill(self, group: ServiceGroup) -> None:
        try:
            group.fill()
        except _CANNOT_START as exc:
            self.log.error("service {service}: an instance could not be started: {error}",
                           service=group.name, error=str(exc))

    def remove(self, name: str) -> Deferred[None]:
        """
        Forget service ``name`` (kept first: ``StoreFailed`` and nothing
        changes), drain and stop its instances, then close its socket; fire
        once it is closed.
        """
        group = self.group(name)
        self._refuse_while_closed()
        self._keeper.forget_service(name)
        del self.groups[name]
        if group.rollout is not None:
            group.rollout.abandon("the service was removed")
        stops = [group.stop_instance(guid) for guid in list(group.members)]
        group.announce(ServiceEvent.REMOVED, {"listen": group.spec.listen})
        self.log.info("service {service} removed: {count} instances drained", service=name,
                      count=len(stops))
        done: Deferred[Any] = DeferredList(stops, consumeErrors=True)
        return done.addBoth(lambda _: group.socket.close() if group.socket else None)

    def scale(self, name: str, count: object) -> ServiceGroup:
        """
        Run ``count`` instances of service ``name`` from now on (see
        :meth:`ServiceGroup.scale`); raise :class:`Invalid` for a bad count,
        :class:`ServiceConflict` while a rollout runs: nothing changes.
        """
        group = self.group(name)
        self._refuse_while_closed()
        if not isinstance(count, int) or isinstance(count, bool):
            raise Invalid("instances must be a whole number")
        self.check_numbers(count, group.spec.surge, group.spec.max_unavailable)
        try:
            before, after = group.scale(count)
        except _CANNOT_START as exc:
            if isinstance(exc, StoreFailed) and group.spec.instances != count:
                raise  # not kept: nothing changed
            self.log.error("service {service}: an instance could not be started: {error}",
                           service=name, error=str(exc))
            before, after = group.spec.instances, count
        self.log.info("service {service} scaled from {before} to {after}", service=name,
                      before=before, after=after)
        group.announce(ServiceEvent.SCALED, {"from": before, "to": after})
        return group

    def roll_out(self, name: str, module: str | None = None,
                 overrides: Mapping[str, str] | None = None) -> RolloutView:
        """
        Replace service ``name``'s instances, one step at a time (see
        :class:`~.rollout.Rollout`), with ones of ``module`` and
        ``overrides`` if given (checked first). Raise
        :class:`ServiceConflict` if a rollout runs.
        """
        group = self.group(name)
        self._refuse_while_closed()
        if group.rollout is not None:
            raise ServiceConflict(f"a rollout of service {name} is running")
        changes: dict[str, Any] = {}
        if module is not None:
            changes["module"] = module
        if overrides is not None:
            changes["overrides"] = overrides
        target = attrs.evolve(group.spec, **changes)
        if changes:
            self._host.admit(target)
        return group.roll_out(target).view()

    # -- the relay ---------------------------------------------------------

    def ready_instances(self, name: str) -> list[Job]:
        """Service ``name``'s ready instances (raise :class:`UnknownService`)."""
        return self.group(name).ready()

    def spread_siblings(self, guid: str) -> list[str] | None:
        """
        The other instances of job ``guid``'s service if that service spreads
        its instances over nodes (a Slurm service, ``spread = nodes``), else
        None; oldest first, those a rollout running replaces before the others.
        """
        try:
            group = self.of_job(self._host.job(guid))
        except UnknownJob:
            return None
        if group is None or group.socket is not None or group.spec.spread != "nodes":
            return None
        others = [member for member in group.members if member != guid]
        # those a rollout (or a recycling) replaces first: the next drained, the first freed
        going = [old for old in group.rollout.old if old in others] if group.rollout else []
        return going + [member for member in others if member not in going]

    # -- start, reload, stop -----------------------------------------------

    def restore(self) -> None:
        """
        Make every declared service (its instance counter from the store),
        then every service the store keeps that was made through the API;
        a kept one no longer declared is forgotten. One that can't be made
        (its address is held, its module is gone) is logged and kept.
        """
        kept = {spec.name: (spec, number) for spec, number in self._keeper.kept_services()}
        for declared in self._settings().services.values():
            number = kept.pop(declared.name, (None, 1))[1]
            self._restore(declared_spec(declared), number)
        for name, (spec, number) in kept.items():
            if spec.declared:
                self.log.info("service {service} is no longer declared: forgotten",
                              service=name)
                self._forget(name)
                continue
            self._restore(spec, number)

    def _restore(self, spec: ServiceSpec, number: int) -> None:
        try:
            self.create(spec, number)
        except (Invalid, OverMaxInstances, ServiceConflict, StoreFailed, LookupError,
                ValueError) as exc:
            self.log.error("service {service} could not be made: {error}", service=spec.name,
                           error=str(exc))

    def _forget(self, name: str) -> None:
        try:
            self._keeper.forget_service(name)
        except StoreFailed as exc:
            self.log.error("service {service}: {error}", service=name, error=str(exc))

    def reload(self, old: Settings, new: Settings,
               changed_modules: frozenset[str]) -> dict[str, list[str]]:
        """
        The config was read again: each declared service is made, removed,
        scaled, rolled out (its module, session, overrides or limits
        changed, or its module's section did) or left as it is; a service
        made through the API is rolled out if its module's section changed.
        What was done, by name.
        """
        done: dict[str, list[str]] = {key: [] for key in
                                      ("created", "removed", "scaled", "rolled_out",
                                       "unchanged")}
        for name in sorted(old.services.keys() - new.services.keys()):
            if name in self.groups and self.groups[name].spec.declared:
                self.remove(name)
                done["removed"].append(name)
        for name, declared in sorted(new.services.items()):
            self._reload_one(declared, old.services.get(name), changed_modules, done)
        for _, group in sorted(self.groups.items()):
            if not group.spec.declared and group.spec.module in changed_modules:
                self._rollout_on_reload(group, group.spec, done)
        return done

    def _reload_one(self, declared: DeclaredService, before: DeclaredService | None,
                    changed_modules: frozenset[str], done: dict[str, list[str]]) -> None:
        name, spec = declared.name, declared_spec(declared)
        group = self.groups.get(name)
        if group is None:
            self._restore(spec, 1)
            done["created"].append(name)
        elif (spec.host, spec.port) != (group.spec.host, group.spec.port):
            self.remove(name).addCallback(lambda _: self._restore(spec, group.next_instance))
            done["created"].append(name)
        elif (spec.code() != group.spec.code() or declared.module in changed_modules
              or (before is not None and declared.limits != before.limits)):
            self._rollout_on_reload(group, spec, done)
        elif spec != group.spec:
            if spec.instances != group.spec.instances and group.rollout is None:
                self.scale(name, spec.instances)
                done["scaled"].append(name)
            group.spec = attrs.evolve(spec, instances=group.spec.instances)
            self._keep(group)
        else:
            done["unchanged"].append(name)

    def _rollout_on_reload(self, group: ServiceGroup, spec: ServiceSpec,
                           done: dict[str, list[str]]) -> None:
        if group.rollout is not None:
            self.log.warn("service {service}: a rollout runs; reload again once it is done",
                          service=group.name)
            return
        group.roll_out(spec)
        done["rolled_out"].append(group.name)

    def _keep(self, group: ServiceGroup) -> None:
        try:
            self._keeper.keep_service(group.spec, group.next_instance)
        except StoreFailed as exc:
            self.log.error("service {service}: {error}", service=group.name, error=str(exc))

    def close(self) -> None:
        """The daemon stops: no instance is started from now on, rollouts stop where they are."""
        self._closed = True
        for group in self.groups.values():
            if group.rollout is not None:
                group.rollout.abandon("the daemon stopped")

    def release(self) -> None:
        """Close every service's socket (once their instances have ended)."""
        for group in self.groups.values():
            if group.socket is not None:
                group.socket.close()

    def ready_counts(self) -> dict[str, tuple[int, int]]:
        """Each service's (ready instances, instances asked for), by name."""
        return {name: (sum(1 for job in group.jobs() if job.state is JobState.READY),
                       group.spec.instances) for name, group in self.groups.items()}
