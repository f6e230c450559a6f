"""
The roles a token has, in order of what they may do: ``viewer`` (reads),
``operator`` (also launches, stops, restarts, config changes, scaling,
rollouts), ``admin`` (also tokens, web-hooks, reload, the audit trail),
and what a caller who lacks one is told.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Forbidden", "OutOfScope", "Role", "Throttled", "Unauthorized"]


class Role(StrEnum):
    """A token's role; each may do what the ones before it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0, 1, 2: viewer, operator, admin."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether a caller of this role may do what ``needed`` may."""
        return self.rank >= needed.rank


class Unauthorized(Exception):
    """The request lacks the bearer token its route needs, or carries a wrong one (401)."""

    def __init__(self) -> None:
        super().__init__("unauthorized")


class Forbidden(Exception):
    """The caller's token has too low a role: the message names the one needed (403)."""

    def __init__(self, what: str, needed: Role):
        self.needed = needed
        super().__init__(f"{what} needs the {needed.value} role")


class OutOfScope(Exception):
    """The caller's token is limited to other modules or services (403)."""

    def __init__(self, token: str, name: str):
        super().__init__(f"the token {token!r} is not for {name!r}: it is limited to"
                         " other modules or services")


class Throttled(Exception):
    """Too many wrong tokens from this address: ``retry_after`` seconds to wait (429)."""

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__("too many failed attempts to authenticate from this address;"
                         f" retry after {retry_after} s")
