"""
The control API's access routes: named tokens (``/tokens``, mounted there
by :class:`~.api.ControlAPI`, so its routes are relative to it), the admin
token's rotation, the audit trail and the caller's own token
(``/audit``, ``/whoami``, which the control API's routes answer here).
"""

from __future__ import annotations

import secrets

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from turberfield_twisted.access.audit import AuditTrail
from turberfield_twisted.access.gate import Gate, caller_of
from turberfield_twisted.access.records import MemoryRecords
from turberfield_twisted.access.throttle import Throttle
from turberfield_twisted.access.tokens import TokenBook
from turberfield_twisted.errors import ApiError, Invalid
from turberfield_twisted.http.args import lines_arg
from turberfield_twisted.http.gate import GatedRouter
from turberfield_twisted.http.roles import ROLES
from turberfield_twisted.http.web import check_body, json_response, read_object

__all__ = ["AccessAPI", "default_gate"]

_MAKE_KEYS = frozenset({"name", "role", "scope", "expires_in"})


def default_gate(admin_token: str, reactor: IReactorTime) -> Gate:
    """A gate taking ``admin_token`` and the named tokens made in memory (no store)."""
    book = TokenBook(secrets.token_bytes(32), MemoryRecords(), reactor, admin_token)
    return Gate(book, Throttle(reactor))


class AccessAPI:
    """Tokens of ``gate``'s book and the ``audit`` trail (None: 404), for admins."""

    app = GatedRouter(ROLES, "/tokens")
    log = Logger()

    def __init__(self, gate: Gate, audit: AuditTrail | None, max_body: int):
        self.gate = gate
        self.audit = audit
        self.max_body = max_body

    @app.route("/", methods=["GET"])
    def list_tokens(self, request: Request) -> bytes:
        """Every named token: name, role, scope, expiry and last use; never a secret."""
        tokens = [record.as_json() for record in self.gate.book.tokens()]
        return json_response(request, 200, {"tokens": tokens})

    @app.route("/", methods=["POST"])
    def make_token(self, request: Request) -> bytes:
        """
        ``{"name", "role", "scope"?, "expires_in"?}``: a new token; 201 with
        its secret, shown this once.
        """
        body = read_object(request, self.max_body, _MAKE_KEYS)
        scope = body.get("scope", [])
        if "expires_in" in body and body["expires_in"] is None:
            raise Invalid("expires_in may be left out (never expires), but not null")
        if not isinstance(scope, list):
            raise Invalid("scope must be a list of module or service names")
        record, secret = self.gate.book.create(body.get("name", ""), body.get("role", ""),
                                               scope, body.get("expires_in"))
        return json_response(request, 201, {**record.as_json(), "secret": secret},
                             {"Location": f"/tokens/{record.name}"})

    @app.route("/<name>", methods=["DELETE"])
    def revoke_token(self, request: Request, name: str) -> bytes:
        """Revoke a token at once: its open event streams end; 204."""
        self.gate.book.revoke(name)
        request.setResponseCode(204)
        return b""

    @app.route("/admin/rotate", methods=["POST"])
    def rotate_admin(self, request: Request) -> bytes:
        """
        ``{"grace"?: seconds}`` (default 0): a new admin token, written to
        admin.token; the old one works ``grace`` seconds more. 200 with it.
        """
        given = check_body(request, self.max_body) > 0
        body = read_object(request, self.max_body, frozenset({"grace"})) if given else {}
        grace = body.get("grace", 0)
        if isinstance(grace, bool) or not isinstance(grace, int | float):
            raise Invalid("grace must be a number of seconds")
        secret = self.gate.book.rotate(grace)
        return json_response(request, 200, {"name": "admin", "role": "admin",
                                            "secret": secret, "grace": grace})

    def audit_trail(self, request: Request) -> bytes:
        """``GET /audit``: the last ``lines`` records, oldest first, and the count dropped."""
        if self.audit is None:
            raise ApiError(404, "this daemon keeps no audit trail")
        records, dropped = self.audit.last(lines_arg(request))
        return json_response(request, 200, {"records": [r.as_json() for r in records],
                                            "dropped": dropped})

    def whoami(self, request: Request) -> bytes:
        """``GET /whoami``: the caller's token name, role and scope."""
        caller = caller_of(request)
        assert caller is not None  # the route needs a viewer's token at least
        return json_response(request, 200, {"name": caller.name, "role": caller.role.value,
                                            "scope": list(caller.scope)})
