"""
The access records in the daemon's store: tokens (their keyed hashes) and the audit trail
survive a reopen; a store an older daemon wrote gains the access tables, its jobs kept; the
token key is made once, 0600.
"""

from __future__ import annotations

import os
import sqlite3
import stat

from zope.interface.verify import verifyObject

from turberfield_twisted.access.records import AuditRecord, IAuditStore, ITokenStore, TokenRecord
from turberfield_twisted.daemon.access_store import KEY_FILE, AccessRecords, token_key
from turberfield_twisted.daemon.statedir import STORE_FILE
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.daemon.store_records import JobRecord


def test_tokens_and_the_audit_trail_survive_a_reopen_bounded(state):
    """What is kept is read back after the store is closed and opened again."""
    store = Store.open(state)
    records = AccessRecords(store)
    assert verifyObject(ITokenStore, records) and verifyObject(IAuditStore, records)
    records.put_token(TokenRecord("ci", "operator", "ab" * 32, ("m",), 1.0, None, None))
    for status in (401, 201, 403):
        records.add_audit(AuditRecord(2.0, "ci", "operator", "127.0.0.1", "POST", "/jobs",
                                      status), keep=2)
    store.close()
    records = AccessRecords(Store.open(state))
    assert records.tokens() == [TokenRecord("ci", "operator", "ab" * 32, ("m",), 1.0)]
    kept, dropped = records.audit(10)
    assert [(r.status, r.seq) for r in kept] == [(201, 2), (403, 3)] and dropped == 1


def test_a_store_an_older_daemon_wrote_gains_the_access_tables(state):
    """The migration: a store without the tables is given them; its jobs stay."""
    store = Store.open(state)
    store.put_job(JobRecord("kept", "demo", None, {}))
    store.close()
    db = sqlite3.connect(str(state.path / STORE_FILE))
    for table in ("tokens", "audit", "counters"):
        db.execute(f"DROP TABLE {table}")
    db.commit()
    db.close()
    store = Store.open(state)
    records = AccessRecords(store)
    assert records.tokens() == [] and records.audit(5) == ([], 0)
    assert [job.guid for job in store.jobs()] == ["kept"]
    store.close()


def test_the_token_key_is_made_once_private(state):
    """token.key: 32 random bytes, 0600, the same on every later start."""
    key = token_key(state)
    assert len(key) == 32 and token_key(state) == key
    assert stat.S_IMODE(os.stat(state.path / KEY_FILE).st_mode) == 0o600
