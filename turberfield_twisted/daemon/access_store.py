"""
The access records in the daemon's store: named tokens (their keyed
hashes) and the audit trail, bounded, with a count of what was dropped.
:class:`AccessRecords` provides the interfaces that
:mod:`turberfield_twisted.access` declares, on the store's one connection.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import cast

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from turberfield_twisted.access.audit import AuditTrail
from turberfield_twisted.access.gate import Gate
from turberfield_twisted.access.records import (
    AuditRecord,
    IAuditStore,
    ITokenStore,
    TokenRecord,
)
from turberfield_twisted.access.throttle import Throttle
from turberfield_twisted.access.tokens import TokenBook
from turberfield_twisted.config.settings import InitiatorSettings
from turberfield_twisted.contract import TOKEN_FILE
from turberfield_twisted.daemon.statedir import StateDir
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.errors import StateDirError

__all__ = ["KEY_FILE", "AccessRecords", "open_access", "token_key"]


@implementer(ITokenStore, IAuditStore)
class AccessRecords:
    """The tokens and audit trail kept in ``store``; each call commits, or raises StoreFailed."""

    def __init__(self, store: Store):
        self._store = store

    def tokens(self) -> list[TokenRecord]:
        rows = self._store.read("read its tokens",
                                "SELECT name, role, digest, scope, created, expires, last_used"
                                " FROM tokens ORDER BY rowid")
        return [TokenRecord(cast(str, name), cast(str, role), cast(str, digest),
                            tuple(json.loads(cast(str, scope))), cast(float, created),
                            cast("float | None", expires), cast("float | None", used))
                for name, role, digest, scope, created, expires, used in rows]

    def put_token(self, record: TokenRecord) -> None:
        self._store.write("keep a token", (
            "INSERT INTO tokens (name, role, digest, scope, created, expires, last_used)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
            " role = excluded.role, digest = excluded.digest, scope = excluded.scope,"
            " created = excluded.created, expires = excluded.expires,"
            " last_used = excluded.last_used",
            (record.name, record.role.value, record.digest, json.dumps(list(record.scope)),
             record.created, record.expires, record.last_used)))

    def remove_token(self, name: str) -> None:
        self._store.write("forget a token", ("DELETE FROM tokens WHERE name = ?", (name,)))

    def add_audit(self, record: AuditRecord, keep: int) -> int:
        self._store.write("keep an audit record", (
            "INSERT INTO audit (time, token, role, remote, method, path, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.time, record.token, record.role, record.remote, record.method,
             record.path, record.status)))
        seq = cast(int, self._store.read("keep an audit record",
                                         "SELECT max(seq) FROM audit")[0][0])
        old = cast(int, self._store.read("keep an audit record",
                                         "SELECT count(*) FROM audit WHERE seq <= ?",
                                         (seq - keep,))[0][0])
        if old:
            self._store.write(
                "drop old audit records",
                ("DELETE FROM audit WHERE seq <= ?", (seq - keep,)),
                ("INSERT INTO counters (name, value) VALUES ('audit_dropped', ?)"
                 " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (old,)))
        return seq

    def audit(self, limit: int) -> tuple[list[AuditRecord], int]:
        rows = self._store.read(
            "read its audit trail",
            "SELECT time, token, role, remote, method, path, status, seq FROM audit"
            " ORDER BY seq DESC LIMIT ?", (max(limit, 0),))
        dropped = self._store.read("read its audit trail",
                                   "SELECT value FROM counters WHERE name = 'audit_dropped'")
        records = [AuditRecord(*cast(tuple[float, str, str, str, str, str, int, int], row))
                   for row in reversed(rows)]
        return records, cast(int, dropped[0][0]) if dropped else 0


#: The HMAC key of the tokens kept in the store (mode 0600).
KEY_FILE = "token.key"


def token_key(state: StateDir) -> bytes:
    """
    The state dir's token key: 32 random bytes, made (0600, never through a
    link) on the first start; :class:`StateDirError` if it can't be had.
    """
    found = state.lstat(KEY_FILE)
    if found is None:
        state.write_private(KEY_FILE, secrets.token_hex(32))
    fd = state.open_private(KEY_FILE, os.O_RDONLY)
    try:
        text = os.read(fd, 256).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise StateDirError(f"{state.path / KEY_FILE} holds no token key: remove it (every"
                            " named token is then refused; make them again)")
    return key


def open_access(reactor: IReactorTime, state: StateDir, store: Store, admin: str,
                own: InitiatorSettings) -> tuple[Gate, AuditTrail, TokenBook]:
    """
    The daemon's access: its tokens (the admin token ``admin``, rotated into
    the state dir's admin.token, and the named ones kept in ``store`` under
    the state dir's key), the throttle and the audit trail, as ``own`` (the
    initiator's settings) says. StateDirError or StoreFailed if they can't be read.
    """
    records = AccessRecords(store)
    book = TokenBook(token_key(state), records, reactor, admin,
                     write_admin=lambda secret: state.write_private(TOKEN_FILE, secret + "\n"))
    gate = Gate(book, Throttle(reactor, allowed=own.auth_failures))
    return gate, AuditTrail(records, reactor, keep=own.audit_keep), book
