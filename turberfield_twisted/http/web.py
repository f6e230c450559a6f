"""
The JSON router base of the control API: bounded request bodies, JSON
answers, bearer auth, and errors answered from ONE table
(:data:`~.statuses.STATUSES`) from the errors routes raise to HTTP statuses.

Routes do not catch domain errors: they raise, and the handler that
:func:`json_errors` registers on every app answers ``{"error": "..."}``
with the status of the most specific class along the exception's MRO.
Only validation errors (:class:`~.errors.Invalid`) are 400; anything the
table does not name is a 500 ``{"error": "internal error"}``, logged.

Import this module only once the asyncio reactor is installed (what it
imports of Twisted's web may import the reactor).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from typing import Any, NoReturn, cast

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from turberfield_twisted.access.roles import Unauthorized
from turberfield_twisted.contract import HasHeaders, authorized
from turberfield_twisted.errors import (
    ConfigError,
    ConfigPushFailed,
    Invalid,
    NoFreePort,
    StoreFailed,
)
from turberfield_twisted.http.router import ErrorHandler, Router, RouterResource
from turberfield_twisted.http.statuses import (
    MESSAGES,
    STATUSES,
    BodyTooLarge,
    headers_of,
    message_of,
    status_of,
    table_entry,
)

# MESSAGES, STATUSES, BodyTooLarge and status_of are re-exported: their home is
# :mod:`.statuses`.
__all__ = [
    "MESSAGES",
    "STATUSES",
    "BodyTooLarge",
    "JsonRouter",
    "Unauthorized",
    "answer_error",
    "check_body",
    "error_parts",
    "guid_of",
    "json_errors",
    "json_response",
    "log_error",
    "query_arg",
    "read_body",
    "read_object",
    "require_token",
    "status_of",
]

_JOB_PATH = re.compile(rb"^/(?:jobs|config)/([^/?]{1,64})")


def json_response(request: IRequest, status: int, body: Any,
                  headers: Mapping[str, str] | None = None) -> bytes:
    """Set ``status`` and ``headers`` on ``request``; return ``body`` as JSON bytes."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in (headers or {}).items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    return json.dumps(body).encode("utf-8")


def answer_error(request: IRequest, exc: BaseException) -> bytes:
    """Answer ``exc`` on ``request`` from the table: its status, headers and message."""
    return json_response(request, status_of(exc), {"error": message_of(exc)},
                         headers_of(exc))


def error_parts(exc: BaseException) -> tuple[int, Mapping[str, str], bytes]:
    """``exc`` as :func:`answer_error` answers it: status, headers (not the type), JSON body."""
    return status_of(exc), headers_of(exc), json.dumps({"error": message_of(exc)}).encode()


def guid_of(request: IRequest) -> str | None:
    """The guid a request is about, if its path names one (for the log)."""
    match = _JOB_PATH.match(getattr(request, "path", b"") or b"")
    return match.group(1).decode("ascii", "replace") if match else None


_log = Logger()


def log_error(log: Logger, request: IRequest, failure: Failure) -> None:
    """
    Log what the caller is not told: no free port, a refused config, a
    store that can't be written, a bug; and a config that can't be reloaded.
    (A failed spawn is logged where it happens, under the job's guid.)
    """
    exc = failure.value
    assert exc is not None
    guid = exc.guid if isinstance(exc, ConfigPushFailed) else guid_of(request)
    method = (request.method or b"?").decode("ascii", "replace")
    path = (getattr(request, "path", b"") or b"").decode("ascii", "replace")[:200]
    head = "{method} {path}" if guid is None else "job {guid}: {method} {path}"
    if isinstance(exc, NoFreePort | ConfigPushFailed | ConfigError):
        log.warn(head + ": {error}", error=str(exc), guid=guid, method=method, path=path)
    elif isinstance(exc, StoreFailed):
        log.error(head + ": {error}", error=str(exc), guid=guid, method=method, path=path)
    elif table_entry(exc) is Exception:
        log.failure(head + ": control API request failed", failure=failure, guid=guid,
                    method=method, path=path)


def json_errors(app: Router) -> None:
    """
    Register on ``app`` the one handler that answers every error from
    :data:`STATUSES`; once per app. It logs with the route class's own
    ``log`` where it has one.
    """

    # The router passes the instance it is bound to first, when there is one.
    def answer(*args: Any) -> bytes:
        request, failure = args[-2:]
        owner = args[0] if len(args) == 3 else None
        log = getattr(owner, "log", None)
        log_error(log if isinstance(log, Logger) else _log, request, failure)
        return answer_error(request, failure.value)

    app.handle_errors(Exception)(cast(ErrorHandler, answer))


class _LimitedRequest(Request):
    """
    A request that stops keeping its body once it passes the site's
    ``max_body``: the rest is read and dropped, and the routes answer 413.
    One ``relayed`` to a worker is left out of the access log.
    """

    too_large = False
    relayed = False
    _received = 0

    @property
    def max_body(self) -> int | None:
        """The site's limit on a body, in bytes (None: no limit)."""
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


class _JsonResource(RouterResource):
    """
    The router's resource, but a URL that is not UTF-8 gets a JSON 400 too, and
    a body the site dropped for its size a 413 before any route runs.
    """

    def render(self, request: IRequest) -> Any:
        if getattr(request, "too_large", False):
            return answer_error(request, BodyTooLarge())
        try:
            b"/".join(request.prepath + request.postpath).decode("utf-8")
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return answer_error(request, Invalid("the URL is not UTF-8"))
        return super().render(request)


class JsonRouter(Router):
    """A :class:`~.router.Router` answering every error as JSON (:func:`json_errors`)."""

    def __init__(self) -> None:
        super().__init__()
        json_errors(self)

    def resource(self) -> _JsonResource:
        """The app as a resource that also answers bad URLs and big bodies as JSON."""
        return _JsonResource(self)


def require_token(request: HasHeaders, expected: bytes | str) -> None:
    """Raise :class:`Unauthorized` unless the request's bearer token is ``expected``."""
    if not authorized(request, expected):
        raise Unauthorized()


def query_arg(request: IRequest, name: bytes) -> str | None:
    """The last value of query argument ``name``, if given."""
    values = (request.args or {}).get(name)
    return values[-1].decode("utf-8", "replace") if values else None


def check_body(request: IRequest, max_body: int) -> int:
    """
    The length of the request's body (its file left at the start); raise
    :class:`BodyTooLarge` if it is over ``max_body`` bytes.
    """
    if getattr(request, "too_large", False):
        raise BodyTooLarge()
    content = request.content
    if content is None:
        return 0
    content.seek(0, 2)
    size: int = content.tell()
    content.seek(0)
    if size > max_body:
        raise BodyTooLarge()
    return size


def read_body(request: IRequest, max_body: int) -> bytes:
    """The request's body; raise :class:`BodyTooLarge` past ``max_body`` bytes."""
    if getattr(request, "too_large", False):
        raise BodyTooLarge()
    raw: bytes = request.content.read(max_body + 1) if request.content else b""
    if len(raw) > max_body:
        raise BodyTooLarge()
    return raw


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def read_object(request: IRequest, max_body: int,
                allowed: frozenset[str] | None = None) -> dict[str, Any]:
    """
    The request's body as a JSON object, with only ``allowed`` keys if
    given; raise :class:`~.errors.Invalid` or :class:`BodyTooLarge`.
    """
    raw = read_body(request, max_body)
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8") from None
    except (ValueError, RecursionError):
        raise Invalid("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    if allowed is not None:
        unknown = sorted(key for key in body if key not in allowed)
        if unknown:
            names = ", ".join(repr(key[:40]) for key in unknown[:5])
            raise Invalid(f"unknown field(s): {names}")
    return body
