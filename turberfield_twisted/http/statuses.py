"""
The control API's ONE table from the errors routes raise to HTTP statuses
(:data:`STATUSES`), the fixed messages that stand for some of them
(:data:`MESSAGES`), and the status, message and headers an answer to an
error gets from them. :func:`~.web.answer_error` answers with these.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from turberfield_twisted.access.roles import Forbidden, OutOfScope, Throttled, Unauthorized
from turberfield_twisted.access.tokens import TokenTaken, UnknownToken
from turberfield_twisted.errors import (
    ApiError,
    CannotForget,
    ChangeRefused,
    ConfigPushFailed,
    DaemonStopping,
    GuidTaken,
    Invalid,
    MethodNotAllowed,
    NoFreePort,
    NotReady,
    OverMaxInstances,
    OverrideNotAllowed,
    PlacementRefused,
    PlacementUnchecked,
    RouteNotFound,
    ServiceConflict,
    SpawnFailed,
    StoreFailed,
    UnknownJob,
    UnknownModule,
    UnknownService,
)
from turberfield_twisted.hooks.dispatcher import UnknownHook
from turberfield_twisted.hooks.rules import HookNotAllowed
from turberfield_twisted.http.relay import RelayError

__all__ = [
    "MAX_MESSAGE",
    "MESSAGES",
    "STATUSES",
    "BodyTooLarge",
    "headers_of",
    "message_of",
    "status_of",
    "table_entry",
]

#: The longest error message an answer carries.
MAX_MESSAGE = 300


class BodyTooLarge(Exception):
    """The request body is longer than the API takes."""

    def __init__(self) -> None:
        super().__init__("the request body is too large")


#: Each error a route may raise, and its HTTP status. The most specific
#: class along an exception's MRO wins (``HookNotAllowed`` is a
#: ``HookRejected``, an ``Invalid``, but 403). :class:`ApiError` and
#: ``RelayError`` carry their own status; their entry here is used only if
#: theirs is not an error status.
STATUSES: Mapping[type[Exception], int] = MappingProxyType({
    Invalid: 400,  # BadGuid, BadOverride, HookRejected, a route's own checks
    Unauthorized: 401,
    OverrideNotAllowed: 403,
    OverMaxInstances: 403,
    HookNotAllowed: 403,
    Forbidden: 403,
    OutOfScope: 403,
    UnknownJob: 404,
    UnknownToken: 404,
    UnknownModule: 404,
    UnknownHook: 404,
    UnknownService: 404,
    RouteNotFound: 404,  # a path with a slash more or less than a route's, too
    MethodNotAllowed: 405,
    NotReady: 409,
    GuidTaken: 409,
    PlacementRefused: 409,
    ServiceConflict: 409,
    CannotForget: 409,
    TokenTaken: 409,
    BodyTooLarge: 413,
    Throttled: 429,
    SpawnFailed: 500,
    ChangeRefused: 422,
    ConfigPushFailed: 502,
    RelayError: 502,
    NoFreePort: 503,
    PlacementUnchecked: 503,
    StoreFailed: 503,
    DaemonStopping: 503,
    ApiError: 500,
    Exception: 500,
})


#: Fixed messages: for these, the exception's own text is for the log only
#: (it may hold an OS error, a worker's answer or a config value).
MESSAGES: Mapping[type[Exception], str] = MappingProxyType({
    SpawnFailed: "the worker process could not be started",
    NoFreePort: "no free port for the job; try again later",
    StoreFailed: "the daemon could not keep this in its state store; see its log",
    ConfigPushFailed: "the job's worker could not be reached: nothing was changed",
    NotReady: "the job did not get ready in time: nothing was changed",
    RouteNotFound: "not found",
    MethodNotAllowed: "method not allowed",
    Exception: "internal error",
})


#: Classes whose instances carry their own status, and its attribute.
_OWN_STATUS: Mapping[type[Exception], str] = MappingProxyType({
    ApiError: "status", RelayError: "status"})


def table_entry(exc: BaseException) -> type[Exception]:
    """The most specific class of ``exc``'s MRO that :data:`STATUSES` names."""
    for cls in type(exc).__mro__:
        if cls in STATUSES:
            return cls
    return Exception


def status_of(exc: BaseException) -> int:
    """The HTTP status that answers ``exc`` (see :data:`STATUSES`)."""
    cls = table_entry(exc)
    own = getattr(exc, _OWN_STATUS[cls], None) if cls in _OWN_STATUS else None
    if isinstance(own, int) and 400 <= own <= 599:
        return own
    return STATUSES[cls]


def message_of(exc: BaseException) -> str:
    """The message that answers ``exc``: fixed (:data:`MESSAGES`), or its own, cut short."""
    cls = table_entry(exc)
    if cls in MESSAGES:
        return MESSAGES[cls]
    if isinstance(exc, ApiError | RelayError):
        return exc.message[:MAX_MESSAGE]
    return str(exc)[:MAX_MESSAGE] or MESSAGES[Exception]


def headers_of(exc: BaseException) -> dict[str, str]:
    """The headers an answer to ``exc`` carries (``WWW-Authenticate``, ``Allow``, ...)."""
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, MethodNotAllowed) and exc.allowed:
        return {"Allow": ", ".join(exc.allowed)}
    if isinstance(exc, ApiError):
        return exc.headers
    if isinstance(exc, DaemonStopping | Throttled):
        return {"Retry-After": str(exc.retry_after)}
    return {}
