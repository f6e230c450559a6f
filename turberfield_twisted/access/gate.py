"""
Who is calling: :class:`Gate` finds the caller of a request (throttled
per remote address, then by its bearer token) and checks its role
against what the operation needs, and its token's scope against what it
acts on. The control API (:mod:`turberfield_twisted.http`) asks it on
every route.
"""

from __future__ import annotations

from typing import Literal

from twisted.web.iweb import IRequest

from turberfield_twisted.access.roles import (
    Forbidden,
    OutOfScope,
    Role,
    Throttled,
    Unauthorized,
)
from turberfield_twisted.access.throttle import Throttle
from turberfield_twisted.access.tokens import Caller, TokenBook
from turberfield_twisted.contract import bearer

__all__ = ["JOB", "PUBLIC", "Gate", "Needed", "caller_of", "check_scope", "remote_of"]

PUBLIC: Literal["public"] = "public"


JOB: Literal["job"] = "job"


#: What an operation needs: no token, a job's own, or a role.
Needed = Role | Literal["public", "job"]


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
