"""
What a worker serves: :class:`WorkerApp` (``/health``, ``/_proactor/config``
and the module's own app) and the :class:`WorkerContext` its app is built
with. The runtime (:mod:`turberfield_twisted.worker.runtime`) serves it on a port;
the testing kit serves it in memory. Importing this installs the asyncio
reactor first, as the worker runtime does.
"""

from __future__ import annotations

# Before klein, whose import would install the default reactor.
from turberfield_twisted.worker import _asyncio  # noqa: F401

# isort: split

import inspect
import json
from collections.abc import Callable
from configparser import ConfigParser
from typing import TYPE_CHECKING, Any

from klein import Klein
from twisted.logger import Logger

from turberfield_twisted.configtext import parse_config, redact, section_items
from turberfield_twisted.contract import CONFIG_PATH, HEALTH_PATH, authorized
from turberfield_twisted.errors import ConfigError
from turberfield_twisted.worker.parent import ParentClient
from turberfield_twisted.worker.proactor import Proactor

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest
    from twisted.web.resource import IResource

    from turberfield_twisted.worker.reactor import IClientReactor

__all__ = ["MAX_CONFIG", "WorkerApp", "WorkerContext"]

log = Logger(namespace="turberfield_twisted.worker")


#: Largest config body ``POST /_proactor/config`` takes.
MAX_CONFIG = 1024 * 1024


class WorkerContext:
    """
    What a worker's app knows: its guid, port, reactor and config, and
    ``parent``, its client of the initiator (None if it has no address).

    A plain class, not an attrs record: attrs compiles its methods when
    the class is made, which every worker would pay for at import.
    """

    __slots__ = ("_token", "guid", "parent", "port", "proactor", "reactor")

    def __init__(self, guid: str, port: int, reactor: IClientReactor, proactor: Proactor,
                 token: str = "", parent: ParentClient | None = None):
        self.guid, self.port, self.reactor = guid, port, reactor
        self.proactor, self.parent = proactor, parent
        self._token = token

    def __repr__(self) -> str:
        return f"WorkerContext(guid={self.guid!r}, port={self.port!r})"

    @property
    def config(self) -> ConfigParser:
        """The ConfigParser read from stdin: DEFAULT and this job's section."""
        return self.proactor.cfg

    @property
    def section(self) -> dict[str, str]:
        """This job's own keys, less secrets."""
        return redact(section_items(self.config, self.guid))

    @property
    def session(self) -> str | None:
        """The job's session, if the launch gave one."""
        return self.config.get(self.guid, "session", fallback="") or None


class WorkerApp:
    """
    What a worker serves, on a port (the runtime) or in memory (the testing
    kit): ``/health``, ``/_proactor/config``, and the app :meth:`build` made.
    """

    app = Klein()

    def __init__(self, guid: str, port: int, reactor: IClientReactor, proactor: Proactor):
        self.guid, self.port, self.reactor, self.proactor = guid, port, reactor, proactor
        #: The module's app, as its factory made it (an object of the module's own).
        self.user: Any = None
        self.user_resource: IResource | None = None
        self.ctx: WorkerContext | None = None
        #: Every route but /health needs the job's token (it listens beyond loopback).
        self.guarded = False

    def build(self, factory: Callable[[WorkerContext], Any] | Klein, token: str,
              parent: ParentClient | None) -> Any:
        """The context and the app: ``factory(ctx)`` (see :func:`run_worker`); raises as it does."""
        self.ctx = WorkerContext(self.guid, self.port, self.reactor, self.proactor,
                                 token=token, parent=parent)
        self.user = factory if isinstance(factory, Klein) else factory(self.ctx)
        app = self.user if isinstance(self.user, Klein) else self.user.app
        self.user_resource = app.resource()
        return self.user

    @app.route(HEALTH_PATH, methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"status": "ok", "guid": self.guid}).encode()

    @app.route(CONFIG_PATH, methods=["POST"])
    async def refresh_config(self, request: IRequest) -> bytes:
        """Take a new config (this job's section only) from the initiator."""
        request.setHeader("Content-Type", "application/json")
        ctx, guid = self.ctx, self.guid
        if ctx is None:
            return _error(request, 503, "not serving yet")
        if not authorized(request, ctx._token):
            return _error(request, 401, "this job's token is needed")
        raw = request.content.read(MAX_CONFIG + 1)
        if len(raw) > MAX_CONFIG:
            return _error(request, 413, "the config is too large")
        try:
            cfg = parse_config(raw.decode("utf-8"), source="<refresh>")
        except UnicodeDecodeError:
            return _error(request, 400, "the config is not UTF-8")
        except ConfigError as exc:
            return _error(request, 400, str(exc))
        if cfg.sections() != [guid]:
            return _error(request, 400, "the config must hold this job's section and no other")
        before, self.proactor.cfg = self.proactor.cfg, cfg
        on_config = getattr(self.user, "on_config", None)
        if callable(on_config):
            try:
                result = on_config(ctx.section)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self.proactor.cfg = before  # all or nothing: the worker keeps its old config
                reason = f"{type(exc).__name__}: {exc}"[:300]
                # An ordinary refusal, not a fault of the worker: one line, no traceback.
                log.warn("job {guid}: on_config refused the change: {reason}", guid=guid,
                         reason=reason.replace("\n", " "))
                return _error(request, 422, reason)
        log.info("job {guid}: config refreshed", guid=guid)
        return json.dumps({"applied": True}).encode()

    @app.route("/", branch=True)
    def delegate(self, request: IRequest) -> bytes | IResource | None:
        if self.guarded and not authorized(request, self.ctx._token if self.ctx else b""):
            request.setHeader("Content-Type", "application/json")
            return _error(request, 401, "this job's token is needed")
        return self.user_resource


def _error(request: IRequest, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    return json.dumps({"error": message}).encode()
