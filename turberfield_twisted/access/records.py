"""
What access keeps, and the interfaces of the store that keeps it: a
named token (its keyed hash, never the secret) and one audit record. The
daemon's store provides both interfaces; tests use :class:`MemoryRecords`.
"""

from __future__ import annotations

import attrs
from zope.interface import Interface, implementer

from turberfield_twisted.access.roles import Role

__all__ = ["AuditRecord", "IAuditStore", "ITokenStore", "MemoryRecords", "TokenRecord"]


@attrs.frozen
class TokenRecord:
    """
    A named token: its ``role``, the ``scope`` it is limited to (module or
    service names; empty: every one), its HMAC-SHA256 ``digest`` (hex),
    when it was made, when it expires (None: never) and was last used.
    """

    name: str
    role: Role = attrs.field(converter=Role)
    digest: str = attrs.field(repr=False)
    scope: tuple[str, ...] = ()
    created: float = 0.0
    expires: float | None = None
    last_used: float | None = None

    def as_json(self) -> dict[str, object]:
        """What ``GET /tokens`` shows of it: never its digest."""
        return {"name": self.name, "role": self.role.value, "scope": list(self.scope),
                "created": self.created, "expires": self.expires,
                "last_used": self.last_used}


@attrs.frozen
class AuditRecord:
    """
    One request kept in the audit trail: when, which token (its name, never
    its secret; ``-`` for none or a wrong one), its role, from where, what,
    and the answer's status.
    """

    time: float
    token: str
    role: str
    remote: str
    method: str
    path: str
    status: int
    seq: int = 0

    def as_json(self) -> dict[str, object]:
        """The record as ``GET /audit`` and the ``audit`` event show it."""
        return attrs.asdict(self)


class ITokenStore(Interface):
    """Where named tokens are kept across restarts."""

    def tokens() -> list[TokenRecord]:
        """Every token kept, oldest first."""

    def put_token(record: TokenRecord) -> None:
        """Keep ``record`` (replacing the one of its name)."""

    def remove_token(name: str) -> None:
        """Forget token ``name`` (nothing if it is not kept)."""


class IAuditStore(Interface):
    """Where the audit trail is kept: bounded, the oldest dropped and counted."""

    def add_audit(record: AuditRecord, keep: int) -> int:
        """Keep ``record``, dropping the oldest past ``keep``; its sequence number."""

    def audit(limit: int) -> tuple[list[AuditRecord], int]:
        """The last ``limit`` records, oldest first, and how many were ever dropped."""


@implementer(ITokenStore, IAuditStore)
class MemoryRecords:
    """Both stores in memory: for tests, and a daemon run without a state dir."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}
        self._audit: list[AuditRecord] = []
        self._seq = 0
        self._dropped = 0

    def tokens(self) -> list[TokenRecord]:
        return list(self._tokens.values())

    def put_token(self, record: TokenRecord) -> None:
        self._tokens[record.name] = record

    def remove_token(self, name: str) -> None:
        self._tokens.pop(name, None)

    def add_audit(self, record: AuditRecord, keep: int) -> int:
        self._seq += 1
        self._audit.append(attrs.evolve(record, seq=self._seq))
        while len(self._audit) > keep:
            self._audit.pop(0)
            self._dropped += 1
        return self._seq

    def audit(self, limit: int) -> tuple[list[AuditRecord], int]:
        return self._audit[-limit:] if limit > 0 else [], self._dropped
