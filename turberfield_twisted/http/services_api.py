"""
The control API's ``/services`` routes: make, show, scale, roll out and
remove services, and relay to their instances: reads for a viewer's token,
changes and the relay for an operator's (:data:`~.roles.ROLES`); a token
limited to some modules or services may touch a service if its scope names
the service or its module.

:class:`ServicesAPI` is mounted under ``/services`` by
:class:`~turberfield_twisted.http.api.ControlAPI`, so its routes are
relative to that (``/`` is ``/services``). Errors are answered by the one
table of :mod:`turberfield_twisted.http.web` (a service that does not
exist is 404, bad input 400, a conflict, such as an address held by
another process or a rollout already running, 409).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.server import Request

from turberfield_twisted.access.gate import Gate, caller_of, check_scope
from turberfield_twisted.daemon.initiator import Initiator
from turberfield_twisted.errors import ApiError
from turberfield_twisted.http.gate import GatedRouter
from turberfield_twisted.http.mounts import SERVICE_PROXY, Mounts
from turberfield_twisted.http.roles import ROLES
from turberfield_twisted.http.service_args import (
    create_args,
    rollout_args,
    scale_args,
    service_wait_args,
)
from turberfield_twisted.http.site import relay_request
from turberfield_twisted.http.upstream import Upstream, upstream_of
from turberfield_twisted.http.views import job_views
from turberfield_twisted.http.web import json_response
from turberfield_twisted.jobs.job import Job, JobEvent
from turberfield_twisted.services.group import ServiceGroup
from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["ServicesAPI", "service_view"]


def service_view(group: ServiceGroup, now: float) -> dict[str, Any]:
    """A service as the API shows it: its spec, ready count, rollout and each instance."""
    return {**group.view(), "members": job_views(group.jobs(), now)}


class ServicesAPI:
    """
    The services of ``initiator``, for the callers ``gate`` admits (the
    role table says which role each route needs); bodies over
    ``max_body`` bytes are refused (413); requests under a service
    (``/services/{name}/proxy/``) are relayed to one of its ready
    instances, through ``mounts`` (the control API's: the services' mount
    is added to it).
    """

    app = GatedRouter(ROLES, "/services")
    log = Logger()

    def __init__(self, initiator: Initiator, gate: Gate, max_body: int, mounts: Mounts,
                 reactor: IClientReactor):
        self.initiator = initiator
        self.gate = gate
        self.max_body = max_body
        self.mounts = mounts
        self.relay = mounts.relay
        self.reactor = reactor
        self._turn = 0
        self._mount = mounts.mount(SERVICE_PROXY, self.choose, self.admit_relayed)

    def _group(self, request: Request, name: str) -> ServiceGroup:
        """Service ``name``, if the caller's token may touch it (its name or its module)."""
        group = self.initiator.services.group(name)
        check_scope(request, group.spec.module, name)
        return group

    def _view(self, group: ServiceGroup) -> dict[str, Any]:
        return service_view(group, self.reactor.seconds())

    @app.route("/", methods=["GET"])
    def list_services(self, request: Request) -> bytes:
        """Every service, with its instances."""
        caller = caller_of(request)
        services = [group for group in self.initiator.services.groups.values()
                    if caller is None or caller.may_touch(group.spec.module, group.name)]
        return json_response(request, 200, {"services": [self._view(g) for g in services]})

    @app.route("/", methods=["POST"])
    def create(self, request: Request) -> bytes:
        """``{"name", "module", "listen", "instances"?, ...}``: make a service; 201."""
        spec, config = create_args(request, self.max_body)
        check_scope(request, spec.module, spec.name)
        _, overrides = self.initiator.admit(spec.module, config)
        group = self.initiator.services.create(attrs.evolve(spec, overrides=overrides))
        self.log.info("service {service} made by the control API", service=spec.name)
        return json_response(request, 201, self._view(group),
                             {"Location": f"/services/{spec.name}"})

    @app.route("/<name>", methods=["GET"])
    async def get_service(self, request: Request, name: str) -> bytes:
        """
        One service. With ``?wait=ready`` (every instance ready, no rollout
        running) or ``?wait=rollout`` (no rollout running), and ``timeout``
        (0..60 s, default 10), answer once it is so, or time is up.
        """
        group = self._group(request, name)
        wait = service_wait_args(request)
        if wait is not None:
            await self._until(group, *wait)
        return json_response(request, 200, self._view(group))

    async def _until(self, group: ServiceGroup, wanted: str, timeout: float) -> None:
        """Return once ``group`` is as ``wanted`` says (or removed), or after ``timeout``."""

        def done() -> bool:
            settled = group.rollout is None or self.initiator.services.groups.get(
                group.name) is not group
            if wanted == "rollout":
                return settled
            return settled and len(group.ready()) >= group.spec.instances

        if timeout <= 0 or done():
            return
        waiting: defer.Deferred[None] = defer.Deferred(lambda _: unsubscribe())

        def check(event: JobEvent) -> None:
            if event.service == group.name and not waiting.called and done():
                unsubscribe()
                waiting.callback(None)

        unsubscribe = self.initiator.subscribe(check)
        try:
            await waiting.addTimeout(timeout, self.reactor)
        except defer.TimeoutError:
            pass

    @app.route("/<name>", methods=["PATCH"])
    def scale(self, request: Request, name: str) -> bytes:
        """``{"instances": N}``: scale live (the newest drained first); 200."""
        self._group(request, name)
        count = scale_args(request, self.max_body)
        group = self.initiator.services.scale(name, count)
        self.log.info("service {service} scaled to {count} by the control API", service=name,
                      count=count)
        return json_response(request, 200, self._view(group))

    @app.route("/<name>", methods=["DELETE"])
    def remove(self, request: Request, name: str) -> bytes:
        """Remove a service: its instances drained, then its socket closed; 202."""
        group = self._group(request, name)
        self.initiator.services.remove(name).addErrback(
            lambda failure: self.log.failure("service {service} did not stop cleanly",
                                             failure=failure, service=name))
        self.log.info("service {service} removed by the control API", service=name)
        return json_response(request, 202, self._view(group))

    @app.route("/<name>/rollout", methods=["POST"])
    def rollout(self, request: Request, name: str) -> bytes:
        """
        ``{"module"?, "config"?}`` (or no body: a rolling restart): replace
        every instance, a step at a time; 202, or 409 if one runs.
        """
        group = self._group(request, name)
        module, config = rollout_args(request, self.max_body)
        if module is not None:
            check_scope(request, module, name)  # to another module: that one too
        overrides = None
        if module is not None or config is not None:
            _, overrides = self.initiator.admit(module or group.spec.module,
                                                dict(group.spec.overrides) if config is None
                                                else config)
        self.initiator.services.roll_out(name, module, overrides)
        self.log.info("service {service} rollout asked by the control API", service=name)
        return json_response(request, 202, self._view(group))

    # -- the relay ---------------------------------------------------------

    @app.route("/<name>/proxy")
    @app.route("/<name>/proxy/<rest:path>")
    async def relay_request(self, request: Request, name: str, path: str = "") -> bytes:
        """``/services/{name}/proxy/{path}``: passed to a ready instance's ``/{path}``."""
        return await self.relayed(request, name)

    def pick(self, name: str) -> Job:
        """
        The ready instance of service ``name`` with the fewest relayed
        requests in flight; of those even, each in turn.
        """
        ready = self.initiator.services.ready_instances(name)
        if not ready:
            raise ApiError(502, f"service {name} has no ready instance")
        self._turn += 1
        start = self._turn % len(ready)
        return min(ready[start:] + ready[:start], key=lambda job: self.relay.in_flight(job.url()))

    async def relayed(self, request: Request, name: str) -> bytes:
        """Relay a Twisted ``request`` to one of service ``name``'s ready instances."""
        return await relay_request(self.mounts.relay_to, request, self._mount, name,
                                   self.max_body)

    def admit_relayed(self, request: Any) -> None:
        """A relayed request needs an operator's token (unless its route admitted it)."""
        if caller_of(request) is None:
            self.gate.admit(request, ROLES[("*", "/services/{name}/proxy/{path}")],
                            "relaying to a service")

    def choose(self, name: str, request: Any) -> Upstream:
        """
        The upstream of a request under service ``name`` (one its caller may
        touch): the instance :meth:`pick` picks, its paths under
        ``/services/{name}/proxy``.
        """
        self._group(request, name)
        mount = f"/services/{name}/proxy".encode("ascii")  # a name is ASCII (config.names)
        return upstream_of(self.pick(name), mount)
