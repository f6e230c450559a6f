"""
The initiator's control API: routes (:mod:`.router`), JSON in and out.

Every error is ``{"error": "<message>"}`` with the status that
:data:`turberfield_twisted.http.statuses.STATUSES` gives it; no traceback ever
reaches a client. Every call but the public ones needs ``Authorization:
Bearer <token>`` of the role :data:`~.roles.ROLES` names for it (403
naming the role if it is lower); a job's own calls (``GET /config/{guid}``, ``POST
/jobs/{guid}/events`` and ``/listening``) need that job's token. A request
under ``/jobs/{guid}/proxy/`` is relayed to the job's worker (so no worker
path is shadowed by the API's own); ``/hooks`` is
:class:`~turberfield_twisted.http.hooks.HooksAPI`, ``/services``
:class:`~.services_api.ServicesAPI`, ``/tokens`` (with
``/audit`` and ``/whoami``) :class:`~.access_api.AccessAPI`; ``/ui/`` is the web
dashboard (:mod:`turberfield_twisted.dashboard`), and ``/`` leads there.

Twisted's web imports the reactor: import this module only once the
asyncio reactor is installed (``tap.makeService`` does so lazily).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IAgent
from twisted.web.server import Request, Site

from turberfield_twisted.access.audit import AuditTrail
from turberfield_twisted.access.gate import Gate, caller_of
from turberfield_twisted.daemon.initiator import Initiator
from turberfield_twisted.daemon.metrics import Metrics
from turberfield_twisted.daemon.reconcile import Reloaded
from turberfield_twisted.dashboard import Dashboard
from turberfield_twisted.errors import ApiError
from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.http.access_api import AccessAPI, default_gate
from turberfield_twisted.http.events import Journal, parse_event_id
from turberfield_twisted.http.hooks import HooksAPI
from turberfield_twisted.http.job_routes import JobRoutes
from turberfield_twisted.http.logs_api import LogsAPI
from turberfield_twisted.http.mounts import Mounts, admit_operator
from turberfield_twisted.http.relay import Relay
from turberfield_twisted.http.router import RouterResource
from turberfield_twisted.http.services_api import ServicesAPI
from turberfield_twisted.http.site import relay_request
from turberfield_twisted.http.streams import Streams
from turberfield_twisted.http.upstream import Choose, Upstream, upstream_of
from turberfield_twisted.http.views import module_views
from turberfield_twisted.http.web import (
    json_response,
    query_arg,
)
from turberfield_twisted.jobs.job import ENDED
from turberfield_twisted.worker.reactor import IClientReactor

if TYPE_CHECKING:  # imported only where logs on disk are on
    from turberfield_twisted.daemon.joblogs import JobLogs

__all__ = ["ControlAPI", "served_routes"]


def served_routes() -> list[tuple[str, str]]:
    """``(method, OpenAPI path)`` of every route the control API serves, mounted apps too."""
    from turberfield_twisted.http import openapi

    return [*openapi.routes(ControlAPI.app), *openapi.routes(HooksAPI.app, "/hooks"),
            *openapi.routes(AccessAPI.app, "/tokens"),
            *openapi.routes(ServicesAPI.app, "/services"), *openapi.routes(LogsAPI.app, "/logs")]


class ControlAPI(JobRoutes):
    """
    The control API of ``initiator``: every route asks ``gate`` (a
    :class:`~turberfield_twisted.access.gate.Gate`: the daemon's, with its
    named tokens kept in the store; by default one that takes
    ``admin_token`` and keeps named tokens in memory) for the role the
    role table (:data:`~.roles.ROLES`) says it needs; ``audit`` (optional)
    keeps each change and refusal; ``hooks`` (optional) manages web-hook
    subscriptions; request bodies over ``max_body`` bytes are refused (413); ``relay`` passes other
    requests under a job to its worker (through ``relay_agent``, an
    ``IAgent``, if given; :meth:`close` closes the relay's own
    connections otherwise), giving each ``relay_timeout``
    seconds for its whole answer; a caller has ``read_timeout`` seconds to
    send a whole request (else 408); ``metrics`` (optional, a
    :class:`~turberfield_twisted.daemon.metrics.Metrics`) is served as
    Prometheus text on ``GET /metrics``; ``reload`` (optional, a
    :meth:`~turberfield_twisted.daemon.reconcile.Reconciler.reload`)
    answers ``POST /reload``.
    """

    app = JobRoutes.app  # the job routes' table: this class's routes join them
    log = Logger()

    def __init__(
        self,
        initiator: Initiator,
        admin_token: str,
        reactor: IClientReactor,
        hooks: HookDispatcher | None = None,
        max_body: int = 1024 * 1024,
        relay_timeout: float = 30.0,
        metrics: Metrics | None = None,
        reload: Callable[[], Reloaded] | None = None,
        relay_agent: IAgent | None = None,
        read_timeout: float | None = 60.0,
        gate: Gate | None = None,
        audit: AuditTrail | None = None,
        logs: JobLogs | None = None,
    ):
        if not admin_token:
            raise ValueError("the admin token must not be empty")
        if max_body < 1 or relay_timeout <= 0:
            raise ValueError("max_body and relay_timeout must be positive")
        self.initiator = initiator
        self.reactor = reactor
        #: Who may call what: tokens, their roles, the throttle.
        self.gate = gate if gate is not None else default_gate(admin_token, reactor)
        self.audit = audit
        self.max_body = max_body
        self.relay_timeout = relay_timeout
        self.read_timeout = read_timeout
        self.metrics = metrics
        self.reload = reload
        self.relay = Relay(reactor, relay_timeout, agent=relay_agent,
                           observe=metrics.relayed if metrics is not None else None)
        #: The relayed paths (a job's first) and the way in to the relay.
        self.mounts = Mounts(self.relay, admit_operator(self.gate, "/jobs/{guid}/proxy/{path}",
                                                        "relaying to a worker"),
                             self._job_upstream)
        #: The ``/hooks`` routes.
        self.hooks_api = HooksAPI(hooks, self.gate, max_body,
                                  stopping=lambda: initiator.stopping)
        #: The ``/services`` routes (and their relay, mounted on this one's).
        self.services_api = ServicesAPI(initiator, self.gate, max_body, self.mounts, reactor)
        #: ``/tokens``, ``/audit`` and ``/whoami``.
        self.access_api = AccessAPI(self.gate, audit, max_body)
        self.logs_api = LogsAPI(logs, self.gate)  #: Logs on disk: ``/jobs/{guid}/logs``, ``/logs``.
        self.dashboard = Dashboard()  #: The web dashboard's files, under ``/ui/``.
        #: Recent job events and output lines, for ``GET /events``.
        self.journal = Journal()
        initiator.subscribe(self.journal.event)
        initiator.subscribe_output(self.journal.line)
        if audit is not None:
            audit.subscribe(self.journal.audit)
        #: The callers' event streams, ended when their token stops working.
        self.streams = Streams(self.journal, reactor, initiator.workers.get)
        self.gate.book.on_revoked(self.streams.close)

    def __repr__(self) -> str:
        return f"<ControlAPI of {self.initiator.guid}>"

    @property
    def hooks(self) -> HookDispatcher | None:
        """The web-hook dispatcher behind ``/hooks`` (None: web-hooks are off)."""
        return self.hooks_api.hooks

    @hooks.setter
    def hooks(self, hooks: HookDispatcher | None) -> None:
        self.hooks_api.hooks = hooks

    def close(self) -> defer.Deferred[None]:
        """Close the relay's idle connections to workers."""
        return self.relay.close()

    def site(self) -> Site:
        """A Site for this API, bodies bounded early, relayed requests read as bytes."""
        return self.mounts.site(self.app.resource(), self.log, self.max_body, self.gate,
                                self.audit, self.read_timeout, self.reactor)

    # -- public ------------------------------------------------------------

    @app.route("/health", methods=["GET"])
    def health(self, request: Request) -> bytes:
        """Liveness, and how many jobs have not ended."""
        live = sum(1 for job in self.initiator.workers.values() if job.state not in ENDED)
        return json_response(request, 200, {"status": "ok", "jobs": live})

    @app.route("/", methods=["GET"])
    def home(self, request: Request) -> bytes:
        """A browser's way in: to the dashboard."""
        return self.dashboard.redirect(request)

    @app.route("/ui", methods=["GET"])
    @app.route("/ui/", branch=True, methods=["GET"])
    def ui(self, request: Request) -> bytes:
        """The dashboard's files: a web page, not part of the JSON API (nor its description)."""
        return self.dashboard.answer(request)

    @app.route("/openapi.json", methods=["GET"])
    def describe(self, request: Request) -> bytes:
        """This API's OpenAPI 3.1 description; no token needed."""
        return json_response(request, 200, self.description)

    @cached_property
    def description(self) -> dict[str, Any]:
        """The OpenAPI description, from the routing tables (it can't drift), when first asked."""
        from turberfield_twisted.http import openapi

        return openapi.document(served_routes())

    @app.route("/metrics", methods=["GET"])
    def scrape(self, request: Request) -> bytes:
        """Prometheus text (a viewer's token, as Prometheus' ``credentials_file``)."""
        if self.metrics is None:
            raise ApiError(404, "metrics are not enabled")
        body, content_type = self.metrics.render()
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        return bytes(body)

    @app.route("/events", methods=["GET"])
    def events(self, request: Request) -> Deferred[bytes]:
        """
        Every job event, and with ``?logs=GUID`` that job's output lines, as
        Server-Sent Events; ``Last-Event-ID`` (or ``?last_event_id=``) resumes.
        """
        logs = query_arg(request, b"logs")
        if logs is not None:
            self._job(request, logs)
        given = request.getHeader(b"last-event-id")
        asked = query_arg(request, b"last_event_id")
        from_query = parse_event_id(asked) if asked else None  # checked even if not used
        last = parse_event_id(given.decode("latin-1")) if given else from_query

        return self.streams.open(request, logs, last)

    @app.route("/reload", methods=["POST"])
    def reload_config(self, request: Request) -> bytes:
        """
        Read the config files again and reconcile the declared jobs: what
        started, stopped, restarted or is unchanged, and the keys that need
        a restart; 400 (file, line, key) and nothing changed if they are bad.
        """
        if self.reload is None:
            raise ApiError(404, "this initiator cannot reload its config")
        self.log.info("config reload asked by the control API")
        return json_response(request, 200, self.reload().as_json())

    @app.route("/modules", methods=["GET"])
    def modules(self, request: Request) -> bytes:
        """The modules a launch may name, with the keys it may override."""
        views = module_views(self.initiator.cfg, self.initiator.settings)
        caller = caller_of(request)
        if caller is not None:
            views = [view for view in views if caller.may_touch(view["name"])]
        return json_response(request, 200, {"modules": views})

    @app.route("/slurm/nodes", methods=["GET"])
    def slurm_nodes(self, request: Request) -> bytes:
        """The Slurm nodes that failed jobs lately or are excluded, and why."""
        return json_response(request, 200, {"nodes": self.initiator.slurm_nodes.view()})

    # -- composition -------------------------------------------------------

    @app.route("/hooks", branch=True)
    def hooks_routes(self, request: Request) -> RouterResource:
        """``/hooks`` and below: the web-hook routes, answered by :class:`HooksAPI`."""
        if not request.postpath:
            request.postpath = [b""]  # ``/hooks`` itself is the mounted app's ``/``
        return self.hooks_api.app.resource()

    @app.route("/services", branch=True)
    def services_routes(self, request: Request) -> RouterResource:
        """``/services`` and below: the services' routes, answered by :class:`ServicesAPI`."""
        if not request.postpath:
            request.postpath = [b""]  # ``/services`` itself is the mounted app's ``/``
        return self.services_api.app.resource()

    @app.route("/logs", branch=True)
    def logs_routes(self, request: Request) -> RouterResource:
        """``/logs`` and below: logs on disk (:class:`LogsAPI`)."""
        return self.logs_api.app.resource()

    @app.route("/tokens", branch=True)
    def tokens_routes(self, request: Request) -> RouterResource:
        """``/tokens`` and below: tokens and the rotation (:class:`AccessAPI`)."""
        if not request.postpath:
            request.postpath = [b""]
        return self.access_api.app.resource()

    @app.route("/audit", methods=["GET"])
    def audit_trail(self, request: Request) -> bytes:
        """The last ``limit`` (1..1000, default 100) audit records, and how many were dropped."""
        return self.access_api.audit_trail(request)

    @app.route("/whoami", methods=["GET"])
    def whoami(self, request: Request) -> bytes:
        """The caller's token: its name, role and scope (what the CLI and dashboard show)."""
        return self.access_api.whoami(request)

    # -- the relay ---------------------------------------------------------

    @app.route("/jobs/<guid>/proxy")
    @app.route("/jobs/<guid>/proxy/<rest:path>")
    async def relay_request(self, request: Request, guid: str, path: str = "") -> bytes:
        """``/jobs/{guid}/proxy/{path}``: passed to the worker's ``/{path}`` and back."""
        mounts = self.mounts  # (the site's front and RelayFirst take most such requests)
        return await relay_request(mounts.relay_to, request, mounts.mounts[0], guid,
                                   self.max_body)

    def _job_upstream(self, guid: str, request: Any) -> Upstream:
        """Job ``guid``'s worker, if the caller's token may act on the job."""
        return upstream_of(self._job(request, guid))

    def mount(self, pattern: re.Pattern[bytes], choose: Choose,
              admit: Callable[[Any], None] | None = None) -> None:
        """Relay the paths ``pattern`` matches as ``choose`` says (:meth:`.Mounts.mount`)."""
        self.mounts.mount(pattern, choose, admit or self.mounts.mounts[0].admit)
