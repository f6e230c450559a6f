"""
Who may call which route: :class:`Gate` finds the caller of a request
(throttled per remote address, then by its bearer token) and checks its
role against what the operation needs; :class:`GatedKlein` gates every
route of an app by :data:`~.roles.ROLES`, so no route can be added
without saying what it needs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from twisted.web.iweb import IRequest

from turberfield_twisted.access.roles import Forbidden, OutOfScope, Role, Throttled
from turberfield_twisted.access.throttle import Throttle
from turberfield_twisted.access.tokens import Caller, TokenBook
from turberfield_twisted.contract import bearer
from turberfield_twisted.http.roles import JOB, PUBLIC, Needed
from turberfield_twisted.http.web import JsonKlein, Unauthorized

__all__ = ["Gate", "GatedKlein", "UngatedRoute", "caller_of", "remote_of"]

_CONVERTER = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


class UngatedRoute(LookupError):
    """A route has no entry in the role table."""


def remote_of(request: IRequest) -> str:
    """The address the request came from (its host), for throttling and the audit."""
    address = request.getClientAddress()
    return str(getattr(address, "host", None) or getattr(address, "name", None) or "-")


def caller_of(request: IRequest) -> Caller | None:
    """The caller the gate found for ``request`` (None: a public or job route)."""
    found = getattr(request, "caller", None)
    return found if isinstance(found, Caller) else None


class Gate:
    """The caller of each request, from ``book``; addresses slowed by ``throttle``."""

    def __init__(self, book: TokenBook, throttle: Throttle):
        self.book = book
        self.throttle = throttle

    def admit(self, request: IRequest, needed: Needed, what: str) -> Caller | None:
        """
        The caller of ``request`` if it may do ``what`` (which needs
        ``needed``); None for a public or job route (the route checks a
        job's token). Raise :class:`Throttled` (429), :class:`Unauthorized`
        (401) or :class:`Forbidden` (403, naming the role).
        """
        if needed == PUBLIC or needed == JOB:
            return None
        self.check_throttle(request)
        caller = self.book.identify(bearer(request.getHeader(b"authorization")))
        if caller is None:
            raise Unauthorized()
        self.throttle.succeeded(remote_of(request))
        request.caller = caller  # type: ignore[attr-defined]  # for the audit and the routes
        assert isinstance(needed, Role)
        if not caller.role.allows(needed):
            raise Forbidden(what, needed)
        return caller

    def check_throttle(self, request: IRequest) -> None:
        """Raise :class:`Throttled` while ``request``'s address must wait."""
        wait = self.throttle.retry_after(remote_of(request))
        if wait is not None:
            raise Throttled(wait)

    def refused(self, request: IRequest, status: int) -> None:
        """
        A request was answered ``status``: a 401 with a (wrong) token counts
        against its address; one with no token guessed nothing.
        """
        if status == 401 and bearer(request.getHeader(b"authorization")):
            self.throttle.failed(remote_of(request))


def check_scope(request: IRequest, *names: str | None) -> None:
    """Raise :class:`OutOfScope` unless the caller's token may act on one of ``names``."""
    caller = caller_of(request)
    if caller is not None and not caller.may_touch(*names):
        raise OutOfScope(caller.name, next((name for name in names if name), "?"))


class GatedKlein(JsonKlein):
    """
    A :class:`JsonKlein` whose every route (but a branch mount: its own
    app is gated) first asks the owner's ``gate`` (a :class:`Gate`) to
    admit the request for what ``roles`` says its operation needs; the
    app is mounted under ``prefix``. A route not in ``roles`` is refused
    as it is declared (:class:`UngatedRoute`).
    """

    def __init__(self, roles: Mapping[tuple[str, str], Needed] | None = None,
                 prefix: str = ""):
        super().__init__()  # Klein binds a copy made with no arguments, its routes copied
        self.roles = roles
        self.prefix = prefix

    def route(self, url: str, *args: Any, branch: bool = False,
              **kwargs: Any) -> Callable[[Any], Any]:
        register = super().route(url, *args, branch=branch, **kwargs)
        if branch or self.roles is None:
            return register
        path = self.prefix + _CONVERTER.sub(r"{\1}", url)
        path = path[:-1] if path.endswith("/") and path != "/" else path
        methods = kwargs.get("methods") or ["*"]
        needs: dict[str, Needed] = {}
        for method in methods:
            if (method, path) not in self.roles:
                raise UngatedRoute(f"{method} {path} has no entry in the role table")
            needs[method] = self.roles[(method, path)]

        def gate(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def gated(instance: Any, request: IRequest, *a: Any, **kw: Any) -> Any:
                method = (request.method or b"").decode("ascii", "replace")
                needed = needs.get(method) or needs.get("*") or needs[methods[0]]
                instance.gate.admit(request, needed, f"{method} {path}")
                return f(instance, request, *a, **kw)

            register(gated)
            return f

        return gate
