"""
HTTP clients: :class:`ControlClient` drives the initiator's control API,
:class:`ParentClient` is a worker's line back to its initiator, and
:func:`push_config` hands a running worker its new config.

Each takes a treq-like ``http`` object (``make_http`` builds one; tests pass
``StubTreq``) and the reactor; every call is bounded by ``timeout``.
Nothing here imports the reactor, and no token is ever logged or put in an
error message.
"""

from __future__ import annotations

import json as _json
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError, ConnectionLost
from twisted.logger import Logger
from twisted.web.client import RequestTransmissionFailed, ResponseFailed

__all__ = [
    "ApiError",
    "ConfigPushFailed",
    "ControlClient",
    "ParentClient",
    "TransportError",
    "make_http",
    "push_config",
]

_PCHAR = "-._~!$&'()*+,;=:@"
#: Longest piece of a non-JSON error body kept in a message.
MAX_MESSAGE = 200

class ApiError(Exception):
    """The server answered with an error: ``status`` and ``message``."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        suffix = f"HTTP {status}"
        super().__init__(message if message == suffix else f"{message} ({suffix})")


class TransportError(Exception):
    """The server could not be reached, or did not answer in time."""


class ConfigPushFailed(RuntimeError):
    """A worker did not take its new config; ``status`` is None if it was not reached."""

    def __init__(self, guid: str, reason: str, status: int | None = None):
        self.guid = guid
        self.status = status
        super().__init__(f"job {guid} did not take its new config: {reason}")


def make_http(reactor: Any, persistent: bool = True) -> tuple[Any, Any]:
    """
    A treq ``HTTPClient`` on one ``HTTPConnectionPool`` of ``reactor``,
    whose connection factory does not log each connection, and with a
    cookie jar that keeps nothing: the relay shares this client between
    callers, so a cookie one worker sets must never go out again. Return
    the client and the pool (close it with ``closeCachedConnections``).
    """
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory

    class _QuietFactory(_HTTP11ClientFactory):
        noisy = False

    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool._factory = _QuietFactory
    pool.maxPersistentPerHost = 4
    pool.retryAutomatically = False
    jar: Any = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return HTTPClient(Agent(reactor, pool=pool), cookiejar=jar), pool


def error_message(body: bytes, status: int) -> str:
    """The ``error`` of a JSON error body, else a short piece of its text."""
    try:
        parsed = _json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"]
    text = body.decode("utf-8", errors="replace").strip().splitlines()
    return text[0][:MAX_MESSAGE] if text and text[0] else f"HTTP {status}"


async def _exchange(
    http: Any, reactor: Any, timeout: float, method: str, url: str, **kwargs: Any
) -> tuple[int, str, bytes]:
    """
    One request and its whole body within ``timeout`` seconds: ``(status,
    content type, body)``. Raise :class:`TransportError` if it fails.
    """

    async def fetch() -> tuple[int, str, bytes]:
        response = await http.request(method, url, timeout=timeout, reactor=reactor, **kwargs)
        body = await response.content()
        ctype = response.headers.getRawHeaders(b"content-type", [b""])[0]
        return response.code, ctype.decode("latin-1"), body

    d = Deferred.fromCoroutine(fetch()).addTimeout(timeout, reactor)
    try:
        return await d
    except (CancelledError, DeferredTimeout, TimeoutError):
        raise TransportError(f"no answer from {_origin(url)} within {timeout:g}s") from None
    except (ConnectError, ConnectionLost, ResponseFailed, RequestTransmissionFailed,
            OSError) as exc:
        raise TransportError(f"cannot reach {_origin(url)}: {_describe(exc)}") from None


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _describe(exc: Exception) -> str:
    reasons = getattr(exc, "reasons", None)  # ResponseFailed and its kind hold failures
    if reasons:
        return "; ".join(sorted({r.getErrorMessage() for r in reasons})) or type(exc).__name__
    return str(exc) or type(exc).__name__


def _bearer(token: str) -> dict[bytes, list[bytes]]:
    return {b"Authorization": [b"Bearer " + token.encode("utf-8")]}


def _quote(part: str) -> str:
    return quote(part, safe="")


class _Base:
    """What both clients share: base URL, token, reactor, timeout."""

    log = Logger()

    def __init__(self, http: Any, url: str, token: str, reactor: Any, timeout: float = 10.0):
        self.http = http
        self.url = url.rstrip("/")
        self._token = token
        self.reactor = reactor
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    async def _raw(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: Any = None,
        auth: bool = True,
    ) -> tuple[int, str, bytes]:
        kwargs: dict[str, Any] = {"headers": _bearer(self._token) if auth else {}}
        if json is not None:
            kwargs["json"] = json
        if params:
            kwargs["params"] = params
        return await _exchange(self.http, self.reactor, self.timeout, method,
                               self.url + path, **kwargs)

    async def _json(
        self, method: str, path: str, json: Any = None, params: Any = None,
        auth: bool = True,
    ) -> Any:
        """The JSON answer (None for an empty one); raise :class:`ApiError` for 4xx/5xx."""
        status, _, body = await self._raw(method, path, json, params, auth)
        if status >= 400:
            raise ApiError(status, error_message(body, status))
        if not body.strip():
            return None
        try:
            return _json.loads(body)
        except ValueError:
            raise ApiError(status, "the answer is not JSON") from None


class ControlClient(_Base):
    """
    The control API of an initiator at ``url`` (e.g. ``http://127.0.0.1:8080``),
    called with the admin ``token``. Errors are :class:`ApiError` (the API
    said no) or :class:`TransportError` (no answer).
    """

    async def health(self) -> dict[str, Any]:
        """``{"status": "ok", "jobs": n}``; needs no token."""
        return await self._json("GET", "/health", auth=False)

    async def jobs(self) -> list[dict[str, Any]]:
        """Every job the initiator knows."""
        return (await self._json("GET", "/jobs"))["jobs"]

    async def launch(
        self, module: str, session: str | None = None, config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Launch ``module``; the new job."""
        body: dict[str, Any] = {"module": module}
        if session is not None:
            body["session"] = session
        if config:
            body["config"] = config
        return await self._json("POST", "/jobs", json=body)

    async def job(self, guid: str) -> dict[str, Any]:
        """One job."""
        return await self._json("GET", f"/jobs/{_quote(guid)}")

    async def stop(self, guid: str) -> dict[str, Any]:
        """Ask a job to stop; the job as it is (``stopping``)."""
        return await self._json("DELETE", f"/jobs/{_quote(guid)}")

    async def restart(self, guid: str) -> dict[str, Any]:
        """Start an ended (``exited`` or ``failed``) job again; the job (``starting``)."""
        return await self._json("POST", f"/jobs/{_quote(guid)}/restart")

    async def wait(self, guid: str, state: str, timeout: float) -> dict[str, Any]:
        """The job once it is ``state`` or has ended, or after ``timeout`` (up to 60) s."""
        return await self._json("GET", f"/jobs/{_quote(guid)}",
                                params={"wait": state, "timeout": f"{timeout:g}"})

    async def update_config(self, guid: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a job's overridable keys (pushed to it if it runs); the job."""
        return await self._json("PATCH", f"/jobs/{_quote(guid)}/config", json=changes)

    async def logs(self, guid: str, lines: int = 100) -> list[dict[str, Any]]:
        """The last ``lines`` output lines of a job: ``{"time", "stream", "line"}`` each."""
        answer = await self._json("GET", f"/jobs/{_quote(guid)}/logs",
                                  params={"lines": str(lines)})
        return answer["lines"]

    async def send(
        self, guid: str, method: str, path: str, json: Any = None, params: Any = None
    ) -> tuple[int, str, bytes]:
        """
        Relay a request to a job's worker at ``path``: ``(status, content
        type, body)`` whatever the status (the worker's own answer, or the
        API's error if it could not relay).
        """
        path = "/".join(quote(p, safe=_PCHAR) for p in path.lstrip("/").split("/"))
        return await self._raw(method.upper(), f"/jobs/{_quote(guid)}/{path}", json, params)

    async def hooks(self) -> list[dict[str, Any]]:
        """The web-hook subscriptions."""
        return (await self._json("GET", "/hooks"))["hooks"]

    async def add_hook(self, url: str, events: list[str]) -> dict[str, Any]:
        """Subscribe ``url`` to ``events``: ``{"id", "url", "events", "secret"}``."""
        return await self._json("POST", "/hooks", json={"url": url, "events": list(events)})

    async def remove_hook(self, hook_id: str) -> None:
        """Drop a subscription."""
        await self._json("DELETE", f"/hooks/{_quote(hook_id)}")


class ParentClient(_Base):
    """A worker's client of its initiator, called with the job's own ``token``."""

    def __init__(self, http: Any, url: str, guid: str, token: str, reactor: Any,
                 timeout: float = 10.0):
        super().__init__(http, url, token, reactor, timeout)
        self.guid = guid

    async def post_event(self, name: str, data: Any = None) -> None:
        """Tell the initiator of event ``name`` (with JSON ``data``)."""
        await self._json("POST", f"/jobs/{_quote(self.guid)}/events",
                         json={"event": name, "data": data})

    async def fetch_config(self) -> dict[str, Any]:
        """This job's config as the initiator has it: ``{"guid", "default", "section"}``."""
        return await self._json("GET", f"/config/{_quote(self.guid)}")


async def push_config(
    http: Any, reactor: Any, guid: str, url: str, token: str, text: str, timeout: float = 10.0
) -> None:
    """
    POST config ``text`` to a worker's ``url`` (its ``/_proactor/config``)
    with the job's ``token``. Raise :class:`ConfigPushFailed` unless it
    answers 200.
    """
    try:
        status, _, body = await _exchange(
            http, reactor, timeout, "POST", url,
            headers={**_bearer(token), b"Content-Type": [b"text/plain; charset=utf-8"]},
            data=text.encode("utf-8"),
        )
    except TransportError as exc:
        raise ConfigPushFailed(guid, str(exc)) from None
    if status != 200:
        raise ConfigPushFailed(guid, str(ApiError(status, error_message(body, status))), status)
