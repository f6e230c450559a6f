"""
The audit trail: every request that changes something, and every refused
one (401, 403, 429), kept with its time, token name (never its secret),
role, remote address, method, path and status; in the store, bounded (the
oldest dropped, and counted), and told to observers (the event stream).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from turberfield_twisted.access.records import AuditRecord, IAuditStore

__all__ = ["REFUSED", "AuditTrail"]

#: The statuses of a refusal, kept whatever the method.
REFUSED = frozenset({401, 403, 429})


#: Methods that change something: kept whatever the answer.
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditTrail:
    """
    The audit trail in ``store``, at most ``keep`` records; ``subscribe``
    observers hear each record as it is kept.
    """

    log = Logger()

    def __init__(self, store: IAuditStore, reactor: IReactorTime, keep: int = 10_000):
        if keep < 1:
            raise ValueError("keep must be positive")
        self._store = store
        self._reactor = reactor
        self.keep = keep
        self._observers: list[Callable[[AuditRecord], None]] = []

    def subscribe(self, observer: Callable[[AuditRecord], None]) -> None:
        """Call ``observer(record)`` for each record kept."""
        self._observers.append(observer)

    @staticmethod
    def wanted(method: str, status: int) -> bool:
        """Whether a request of ``method`` answered ``status`` is kept."""
        return status in REFUSED or method in CHANGING

    def record(self, token: str, role: str, remote: str, method: str, path: str,
               status: int) -> AuditRecord | None:
        """
        Keep one request (if :meth:`wanted`); the record, or None if it is
        not kept or the store failed (logged: the answer has gone already).
        """
        if not self.wanted(method, status):
            return None
        record = AuditRecord(self._reactor.seconds(), token, role, remote, method,
                             path[:512], status)
        try:
            seq = self._store.add_audit(record, self.keep)
        except Exception as exc:
            self.log.error("audit: a record could not be kept: {error}", error=str(exc))
            return None
        kept = AuditRecord(record.time, token, role, remote, method, record.path, status, seq)
        for observer in list(self._observers):
            try:
                observer(kept)
            except Exception:
                self.log.failure("an audit observer failed")
        return kept

    def last(self, limit: int = 100) -> tuple[list[AuditRecord], int]:
        """The last ``limit`` records, oldest first, and how many were dropped."""
        return self._store.audit(limit)
