"""
The role each operation of the control API needs: ONE table, keyed as
:data:`~.openapi.OPERATIONS` is, read by the routes (every route of a
:class:`~.gate.GatedRouter` app given this table is gated by it, and a route
without an entry is refused when its class is made) and by the OpenAPI
document (each operation's ``security`` and ``x-role``).

``PUBLIC`` needs no token; ``JOB`` needs the job's own token (its route
checks it); otherwise the least :class:`~turberfield_twisted.access.roles.Role`
that may call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from turberfield_twisted.access.gate import JOB, PUBLIC, Needed
from turberfield_twisted.access.roles import Role

__all__ = ["JOB", "PUBLIC", "ROLES", "Needed"]


_V, _O, _A = Role.VIEWER, Role.OPERATOR, Role.ADMIN


#: ``(method, OpenAPI path)`` to what it needs (``*``: any method, the relay).
ROLES: Mapping[tuple[str, str], Needed] = MappingProxyType({
    ("GET", "/health"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/ui"): PUBLIC,  # the dashboard's files: a page, not in the document
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/metrics"): _V,
    ("GET", "/events"): _V,
    ("GET", "/modules"): _V,
    ("GET", "/slurm/nodes"): _V,
    ("GET", "/jobs"): _V,
    ("GET", "/jobs/{guid}"): _V,
    ("GET", "/jobs/{guid}/logs"): _V,
    ("POST", "/jobs"): _O,
    ("DELETE", "/jobs/{guid}"): _O,
    ("POST", "/jobs/{guid}/restart"): _O,
    ("PATCH", "/jobs/{guid}/config"): _O,
    ("POST", "/jobs/{guid}/forget"): _O,
    ("*", "/jobs/{guid}/proxy"): _O,
    ("*", "/jobs/{guid}/proxy/{path}"): _O,
    ("POST", "/logs/reopen"): _O,
    ("POST", "/reload"): _A,
    ("GET", "/hooks"): _A,
    ("POST", "/hooks"): _A,
    ("DELETE", "/hooks/{hook_id}"): _A,
    ("GET", "/tokens"): _A,
    ("POST", "/tokens"): _A,
    ("DELETE", "/tokens/{name}"): _A,
    ("POST", "/tokens/admin/rotate"): _A,
    ("GET", "/audit"): _A,
    ("GET", "/whoami"): _V,
    # Services (issue 22's routes, once merged: reads are a viewer's, changes an operator's).
    ("GET", "/services"): _V,
    ("GET", "/services/{name}"): _V,
    ("POST", "/services"): _O,
    ("PATCH", "/services/{name}"): _O,
    ("DELETE", "/services/{name}"): _O,
    ("POST", "/services/{name}/rollout"): _O,
    ("*", "/services/{name}/proxy"): _O,
    ("*", "/services/{name}/proxy/{path}"): _O,
    ("GET", "/config/{guid}"): JOB,
    ("POST", "/jobs/{guid}/events"): JOB,
    ("POST", "/jobs/{guid}/listening"): JOB,
})
