"""
The initiator's control API: Klein routes, JSON in and out.

Every error is ``{"error": "<message>"}`` with its status code; no
traceback ever reaches a client. Admin calls need ``Authorization: Bearer
<admin token>``; a job's own calls (``GET /config/{guid}``, ``POST
/jobs/{guid}/events``) need that job's token. Any other request under
``/jobs/{guid}/...`` is relayed to the job's worker.

``import klein`` imports the reactor: import this module only once the
asyncio reactor is installed (``tap.makeService`` does so lazily).
"""

from __future__ import annotations

import hmac
import inspect
import io
import json
import re
from configparser import DEFAULTSECT
from typing import Any

from klein import Klein
from klein.resource import KleinResource
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request, Site
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import BaseConverter, RequestRedirect

from .client import ConfigPushFailed
from .config import redact, section_items
from .errors import (
    BadGuid,
    BadOverride,
    NoFreePort,
    NotEnded,
    OverrideNotAllowed,
    SpawnFailed,
    UnknownJob,
    UnknownModule,
)
from .hooks import HookNotAllowed
from .job import ENDED, Job, JobState
from .relay import Relay, RelayError

__all__ = ["ControlAPI"]

#: Paths under ``/jobs/{guid}/`` that belong to the control API, not the worker.
OWN_PATHS = {"logs": ("GET", "HEAD"), "events": ("POST",), "config": ("PATCH",),
             "restart": ("POST",)}
#: The longest ``GET /jobs/{guid}?wait=`` may wait, in seconds.
MAX_WAIT = 60.0

_EVENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_SESSION = re.compile(r"^[^\x00-\x1f\x7f$]{0,256}$")
_JOB_PATH = re.compile(rb"^/(?:jobs|config)/([^/?]{1,64})")


class ApiError(Exception):
    """An answer other than success: ``status``, a readable ``message``, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        self.status = status
        self.message = message
        self.headers = headers or {}
        super().__init__(status, message)


def _unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", {"WWW-Authenticate": "Bearer"})


class _LimitedRequest(Request):
    """
    A request that stops keeping its body once it passes the site's
    ``max_body``: the rest is read and dropped, and the routes answer 413.
    """

    too_large = False
    _received = 0

    @property
    def max_body(self) -> int | None:
        site = getattr(self.channel, "site", None)
        return getattr(site, "max_body", None)

    def _drop_body(self) -> None:
        self.too_large = True
        old = getattr(self, "content", None)
        if old is not None:
            old.close()
        self.content = io.BytesIO()

    def gotLength(self, length: int | None) -> None:
        limit = self.max_body
        if limit is not None and length is not None and length > limit:
            self._drop_body()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.too_large:
            return
        self._received += len(data)
        limit = self.max_body
        if limit is not None and self._received > limit:
            self._drop_body()
            return
        super().handleContentChunk(data)


class _JsonKleinResource(KleinResource):
    """
    Klein's resource, but a URL that is not UTF-8 gets a JSON 400 too, and
    a body the site dropped for its size a 413 before any route runs.
    """

    def render(self, request: Any) -> Any:
        if getattr(request, "too_large", False):
            limit = getattr(request, "max_body", "max_body")
            return _json(request, 413, {"error": f"the body is over {limit} bytes"})
        try:
            b"/".join(request.prepath + request.postpath).decode("utf-8")
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return _json(request, 400, {"error": "the URL is not UTF-8"})
        return super().render(request)


class _Rest(BaseConverter):
    """The rest of a path, possibly empty (werkzeug's ``path`` needs a character)."""

    regex = ".*"
    part_isolating = False


class _JsonKlein(Klein):
    """Klein with JSON errors for undecodable URLs and a ``<rest:...>`` converter."""

    def __init__(self) -> None:
        super().__init__()
        self.url_map.converters["rest"] = _Rest

    def resource(self) -> _JsonKleinResource:
        return _JsonKleinResource(self)


def _json(request: Any, status: int, body: Any, headers: dict[str, str] | None = None) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in (headers or {}).items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    return json.dumps(body).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _arg(request: Any, name: bytes) -> str | None:
    """The last value of query argument ``name``, if given."""
    values = (request.args or {}).get(name)
    return values[-1].decode("utf-8", "replace") if values else None


def _guid_of(request: Any) -> str | None:
    """The guid a request is about, if its path names one (for the log)."""
    match = _JOB_PATH.match(getattr(request, "path", b"") or b"")
    return match.group(1).decode("ascii", "replace") if match else None


class ControlAPI:
    """
    The control API of ``initiator``: ``admin_token`` guards admin calls;
    ``hooks`` (optional) manages web-hook subscriptions; request bodies
    over ``max_body`` bytes are refused (413); ``relay`` passes other
    requests under a job to its worker, giving each ``relay_timeout``
    seconds for its whole answer; ``metrics`` (optional, a
    :class:`~.metrics.Metrics`) is served as Prometheus text on ``GET
    /metrics``.
    """

    app = _JsonKlein()
    log = Logger()

    def __init__(
        self,
        initiator: Any,
        admin_token: str,
        reactor: Any,
        hooks: Any = None,
        max_body: int = 1024 * 1024,
        relay_timeout: float = 30.0,
        metrics: Any = None,
    ):
        if not admin_token:
            raise ValueError("the admin token must not be empty")
        if max_body < 1 or relay_timeout <= 0:
            raise ValueError("max_body and relay_timeout must be positive")
        self.initiator = initiator
        self._admin_token = admin_token.encode("utf-8")
        self.reactor = reactor
        self.hooks = hooks
        self.max_body = max_body
        self.relay_timeout = relay_timeout
        self.metrics = metrics
        self.relay = Relay(initiator.http, reactor, relay_timeout)

    def __repr__(self) -> str:
        return f"<ControlAPI of {getattr(self.initiator, 'guid', '?')}>"

    def site(self) -> Site:
        """A Site for this API: quiet, no tracebacks, bodies bounded early."""
        site = Site(self.app.resource(), requestFactory=_LimitedRequest)
        site.max_body = self.max_body  # type: ignore[attr-defined]
        site.noisy = False
        site.displayTracebacks = False
        return site

    # -- errors ------------------------------------------------------------

    @app.handle_errors(ApiError)
    def _api_error(self, request: Any, failure: Failure) -> bytes:
        exc = failure.value
        assert isinstance(exc, ApiError)
        return _json(request, exc.status, {"error": exc.message}, exc.headers)

    @app.handle_errors(RelayError)
    def _relay_error(self, request: Any, failure: Failure) -> bytes:
        exc = failure.value
        assert isinstance(exc, RelayError)
        return _json(request, exc.status, {"error": exc.message})

    @app.handle_errors(UnknownJob)
    def _unknown_job(self, request: Any, failure: Failure) -> bytes:
        return _json(request, 404, {"error": str(failure.value)})

    @app.handle_errors(HTTPException)
    def _http_error(self, request: Any, failure: Failure) -> bytes:
        exc = failure.value
        assert isinstance(exc, HTTPException)
        if isinstance(exc, RequestRedirect) or exc.code == 404:
            return _json(request, 404, {"error": "not found"})
        if isinstance(exc, MethodNotAllowed):
            allow = ", ".join(exc.valid_methods or [])
            return _json(request, 405, {"error": "method not allowed"},
                         {"Allow": allow} if allow else None)
        code = exc.code or 400
        return _json(request, code, {"error": (exc.name or "bad request").lower()})

    @app.handle_errors(Exception)
    def _internal_error(self, request: Any, failure: Failure) -> bytes:
        guid = _guid_of(request)
        if guid is None:
            self.log.failure("control API request failed", failure=failure)
        else:
            self.log.failure("job {guid}: control API request failed", failure=failure,
                             guid=guid)
        return _json(request, 500, {"error": "internal error"})

    # -- helpers -----------------------------------------------------------

    def _bearer(self, request: Any) -> bytes:
        value = request.getHeader(b"authorization") or b""
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer":
            return b""
        return token.strip()

    def _admin(self, request: Any) -> None:
        if not hmac.compare_digest(self._bearer(request), self._admin_token):
            raise _unauthorized()

    def _job_caller(self, request: Any, guid: str) -> Job:
        """The job, if the request carries that job's own token."""
        given = self._bearer(request)
        job = self.initiator.workers.get(guid)
        expected = job.token.encode("utf-8") if job is not None and job.token else b""
        ok = hmac.compare_digest(given, expected or b"\0" * 43)
        if job is None or not expected or not ok:
            raise _unauthorized()
        return job

    def _raw_body(self, request: Any) -> bytes:
        if getattr(request, "too_large", False):
            raise ApiError(413, f"the body is over {self.max_body} bytes")
        raw: bytes = request.content.read(self.max_body + 1) if request.content else b""
        if len(raw) > self.max_body:
            raise ApiError(413, f"the body is over {self.max_body} bytes")
        return raw

    def _object(self, request: Any, allowed: frozenset[str] | None = None) -> dict[str, Any]:
        """The request's body: a JSON object, with only ``allowed`` keys if given."""
        raw = self._raw_body(request)
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise ApiError(400, "the body is not UTF-8") from None
        except (ValueError, RecursionError):
            raise ApiError(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        if allowed is not None:
            unknown = sorted(key for key in body if key not in allowed)
            if unknown:
                names = ", ".join(repr(key[:40]) for key in unknown[:5])
                raise ApiError(400, f"unknown field(s): {names}")
        return body

    # -- public ------------------------------------------------------------

    @app.route("/health", methods=["GET"])
    def health(self, request: Any) -> bytes:
        """Liveness, and how many jobs have not ended."""
        live = sum(1 for job in self.initiator.workers.values() if job.state not in ENDED)
        return _json(request, 200, {"status": "ok", "jobs": live})

    @app.route("/metrics", methods=["GET"])
    def scrape(self, request: Any) -> bytes:
        """Prometheus text (admin token, as Prometheus' ``credentials_file``)."""
        self._admin(request)
        if self.metrics is None:
            raise ApiError(404, "metrics are not enabled")
        body, content_type = self.metrics.render()
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        return bytes(body)

    # -- jobs --------------------------------------------------------------

    @app.route("/jobs", methods=["GET"])
    def list_jobs(self, request: Any) -> bytes:
        self._admin(request)
        jobs = [job.as_json() for job in list(self.initiator.workers.values())]
        return _json(request, 200, {"jobs": jobs})

    @app.route("/jobs", methods=["POST"])
    async def launch(self, request: Any) -> bytes:
        """``{"module", "session"?, "config"?, "guid"?}``: start a job."""
        self._admin(request)
        body = self._object(request, frozenset({"module", "session", "config", "guid"}))
        module = body.get("module")
        session = body.get("session")
        config = body.get("config")
        guid = body.get("guid")
        if not isinstance(module, str) or not module:
            raise ApiError(400, "module must be a non-empty string")
        if session is not None and not (isinstance(session, str) and _SESSION.match(session)):
            raise ApiError(400, "session must be null or a string of at most 256 characters,"
                                " without control characters or '$'")
        if config is not None and not isinstance(config, dict):
            raise ApiError(400, "config must be an object of key: value")
        if guid is not None and not isinstance(guid, str):
            raise ApiError(400, "guid must be a string")
        try:
            guid = await self.initiator.launch(module, guid=guid, session=session, config=config)
        except UnknownModule:
            raise ApiError(404, f"module {module[:200]!r} is not allowed or not found") from None
        except OverrideNotAllowed as exc:
            raise ApiError(403, str(exc)) from None
        except (BadOverride, BadGuid) as exc:
            raise ApiError(400, str(exc)) from None
        except NoFreePort:
            self.log.warn("no free port to launch {module}", module=module)
            raise ApiError(503, "no free port for a new job; try again later") from None
        except SpawnFailed as exc:
            self.log.error("could not start {module}: {error}", module=module, error=str(exc))
            raise ApiError(500, "the worker process could not be started") from None
        job = self.initiator.job(guid)
        self.log.info("job {guid} launched ({module}) by the control API", guid=guid,
                      module=module)
        return _json(request, 201, job.as_json(), {"Location": f"/jobs/{guid}"})

    @app.route("/jobs/<guid>", methods=["GET"])
    async def get_job(self, request: Any, guid: str) -> bytes:
        """
        One job. With ``?wait=<state>`` (and ``timeout``, 0..60 s, default
        10), answer once it is in that state or has ended, or time is up.
        """
        self._admin(request)
        job = self.initiator.job(guid)
        wanted = _arg(request, b"wait")
        if wanted is not None:
            if wanted not in set(JobState):
                raise ApiError(400, f"wait must be one of: {', '.join(JobState)}")
            given = _arg(request, b"timeout")
            try:
                timeout = 10.0 if given is None else float(given)
            except ValueError:
                timeout = -1.0
            if not 0 <= timeout <= MAX_WAIT:
                raise ApiError(400, f"timeout must be a number of seconds from 0 to {MAX_WAIT:g}")
            await self._until(job, wanted, timeout)
        return _json(request, 200, job.as_json())

    async def _until(self, job: Job, wanted: str, timeout: float) -> None:
        """Return once ``job`` is ``wanted`` or has ended, or after ``timeout``."""
        if timeout <= 0:
            return
        try:
            await self.initiator.wait_for_state(job.guid, {wanted, *ENDED}, timeout)
        except defer.TimeoutError:
            pass

    @app.route("/jobs/<guid>", methods=["DELETE"])
    def stop_job(self, request: Any, guid: str) -> bytes:
        """Ask the job to stop; answer at once (202) while it stops."""
        self._admin(request)
        job = self.initiator.job(guid)
        self.log.info("job {guid} stop asked by the control API", guid=guid)
        self.initiator.stop(guid).addErrback(
            lambda failure: self.log.failure("job {guid} did not stop cleanly",
                                             failure=failure, guid=guid)
        )
        return _json(request, 202, job.as_json())

    @app.route("/jobs/<guid>/restart", methods=["POST"])
    def restart_job(self, request: Any, guid: str) -> bytes:
        """Start an ended job again (a ``failed`` job stays down until this); 202."""
        self._admin(request)
        try:
            job = self.initiator.restart(guid)
        except NotEnded as exc:
            raise ApiError(409, str(exc)) from None
        except UnknownModule as exc:
            raise ApiError(404, str(exc)) from None
        except NoFreePort:
            raise ApiError(503, "no free port for the job; try again later") from None
        except SpawnFailed as exc:
            self.log.error("job {guid} could not restart: {error}", guid=guid, error=str(exc))
            raise ApiError(500, "the worker process could not be started") from None
        self.log.info("job {guid} restart asked by the control API", guid=guid)
        return _json(request, 202, job.as_json())

    @app.route("/jobs/<guid>/logs", methods=["GET"])
    def logs(self, request: Any, guid: str) -> bytes:
        """The last ``lines`` (1..1000, default 100) lines of the job's output."""
        self._admin(request)
        job = self.initiator.job(guid)
        given = _arg(request, b"lines")
        try:
            count = 100 if given is None else int(given)
        except ValueError:
            count = 0
        if not 1 <= count <= 1000:
            raise ApiError(400, "lines must be a whole number from 1 to 1000")
        return _json(request, 200, {"guid": guid, "lines": job.tail.lines()[-count:]})

    @app.route("/jobs/<guid>/config", methods=["PATCH"])
    async def update_config(self, request: Any, guid: str) -> bytes:
        """
        ``{key: value}``: change a job's overrides; a running job is sent its
        new config (502 if it did not take it: the change is kept).
        """
        self._admin(request)
        self.initiator.job(guid)
        changes = self._object(request)
        update = getattr(self.initiator, "update_config", None)
        if update is None:
            raise ApiError(501, "this initiator cannot change a job's config")
        try:
            result = update(guid, changes)
            if inspect.isawaitable(result):
                result = await result
        except OverrideNotAllowed as exc:
            raise ApiError(403, str(exc)) from None
        except BadOverride as exc:
            raise ApiError(400, str(exc)) from None
        except ConfigPushFailed as exc:
            self.log.warn("job {guid}: {error}", guid=guid, error=str(exc))
            raise ApiError(502, f"the change is kept, but {str(exc)[:300]}") from None
        job = result if isinstance(result, Job) else self.initiator.job(guid)
        self.log.info("job {guid} config changed by the control API: {keys}", guid=guid,
                      keys=sorted(changes))
        return _json(request, 200, job.as_json())

    # -- a job's own calls -------------------------------------------------

    @app.route("/config/<guid>", methods=["GET"])
    def job_config(self, request: Any, guid: str) -> bytes:
        """A job's own config, less secrets; that job's token only."""
        self._job_caller(request, guid)
        cfg = self.initiator.cfg
        default = {key: cfg.get(DEFAULTSECT, key) for key in cfg.defaults()}
        section = section_items(cfg, guid) if cfg.has_section(guid) else {}
        return _json(request, 200, {"guid": guid, "default": redact(default),
                                    "section": redact(section)})

    @app.route("/jobs/<guid>/events", methods=["POST"])
    def worker_event(self, request: Any, guid: str) -> bytes:
        """``{"event": name, "data"?: any}`` from the job itself."""
        self._job_caller(request, guid)
        body = self._object(request, frozenset({"event", "data"}))
        event = body.get("event")
        if not isinstance(event, str) or not _EVENT.match(event):
            raise ApiError(400, "event must be a short name (letters, digits, _ . : -)")
        self.initiator.worker_event(guid, event, body.get("data"))
        return _json(request, 202, {"accepted": True})

    # -- web-hooks ---------------------------------------------------------

    def _hooks(self, request: Any) -> Any:
        self._admin(request)
        if self.hooks is None:
            raise ApiError(404, "web-hooks are not enabled")
        return self.hooks

    @app.route("/hooks", methods=["GET"])
    def list_hooks(self, request: Any) -> bytes:
        hooks = self._hooks(request)
        return _json(request, 200, {"hooks": [redact(hook) for hook in hooks.list()]})

    @app.route("/hooks", methods=["POST"])
    async def add_hook(self, request: Any) -> bytes:
        """``{"url", "events"?: [name, ...]}`` (default ``["*"]``): subscribe; secret shown once."""
        hooks = self._hooks(request)
        body = self._object(request, frozenset({"url", "events"}))
        url, events = body.get("url"), body.get("events")
        if not isinstance(url, str) or not url:
            raise ApiError(400, "url must be a non-empty string")
        if events is not None and not (
            isinstance(events, list) and all(isinstance(e, str) for e in events)
        ):
            raise ApiError(400, "events must be a list of names")
        try:
            hook = hooks.add(url, ["*"] if events is None else events)
            if inspect.isawaitable(hook):
                hook = await hook
        except (PermissionError, ValueError, TypeError) as exc:
            forbidden = isinstance(exc, HookNotAllowed | PermissionError)
            raise ApiError(403 if forbidden else 400, str(exc)[:300]) from None
        self.log.info("web-hook {hook_id} added by the control API", hook_id=hook.get("id"))
        return _json(request, 201, hook)

    @app.route("/hooks/<hook_id>", methods=["DELETE"])
    def remove_hook(self, request: Any, hook_id: str) -> bytes:
        hooks = self._hooks(request)
        try:
            hooks.remove(hook_id)
        except KeyError:
            raise ApiError(404, "no such web-hook") from None
        self.log.info("web-hook {hook_id} removed by the control API", hook_id=hook_id[:64])
        request.setResponseCode(204)
        return b""

    # -- the relay ---------------------------------------------------------

    @app.route("/jobs/<guid>/<rest:rest>")
    async def relay_request(self, request: Any, guid: str, rest: str) -> bytes:
        """Any other request under a job: passed to its worker and back."""
        own = OWN_PATHS.get(rest)
        if own is not None:
            raise MethodNotAllowed(valid_methods=list(own))
        self._admin(request)
        job = self.initiator.job(guid)
        body = self._raw_body(request)
        return await self.relay.forward(request, job, self.initiator.worker_url(job), body)

