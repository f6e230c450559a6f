"""
:class:`GatedRouter` gates every route of an app by :data:`~.roles.ROLES`
(through its owner's :class:`~turberfield_twisted.access.gate.Gate`), so
no route can be added without saying what it needs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from twisted.web.iweb import IRequest

from turberfield_twisted.access.gate import Needed
from turberfield_twisted.http.web import JsonRouter

__all__ = ["GatedRouter", "UngatedRoute"]

_CONVERTER = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


class UngatedRoute(LookupError):
    """A route has no entry in the role table."""


class GatedRouter(JsonRouter):
    """
    A :class:`JsonRouter` whose every route (but a branch mount: its own
    app is gated) first asks the owner's ``gate`` (a :class:`Gate`) to
    admit the request for what ``roles`` says its operation needs; the
    app is mounted under ``prefix``. A route not in ``roles`` is refused
    as it is declared (:class:`UngatedRoute`).
    """

    def __init__(self, roles: Mapping[tuple[str, str], Needed] | None = None,
                 prefix: str = ""):
        super().__init__()
        self.roles = roles
        self.prefix = prefix

    def route(self, url: str, methods: list[str] | None = None, *, branch: bool = False,
              endpoint: str | None = None) -> Callable[[Any], Any]:
        register = super().route(url, methods, branch=branch, endpoint=endpoint)
        if branch or self.roles is None:
            return register
        path = self.prefix + _CONVERTER.sub(r"{\1}", url)
        path = path[:-1] if path.endswith("/") and path != "/" else path
        named = methods or ["*"]
        needs: dict[str, Needed] = {}
        for method in named:
            if (method, path) not in self.roles:
                raise UngatedRoute(f"{method} {path} has no entry in the role table")
            needs[method] = self.roles[(method, path)]

        def gate(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def gated(instance: Any, request: IRequest, *a: Any, **kw: Any) -> Any:
                method = (request.method or b"").decode("ascii", "replace")
                needed = needs.get(method) or needs.get("*") or needs[named[0]]
                instance.gate.admit(request, needed, f"{method} {path}")
                return f(instance, request, *a, **kw)

            register(gated)
            return f

        return gate
