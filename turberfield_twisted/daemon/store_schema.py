"""
The durable store's schema: its tables as SQL, its version, and how a new
store is made whole (under another name, then renamed into place) so that a
store file without a schema is never taken for a new one
(:class:`~.store.Store` refuses it).
"""

from __future__ import annotations

import os
import sqlite3

from turberfield_twisted.daemon.statedir import STORE_FILE, StateDir

__all__ = ["ACCESS_SCHEMA", "MIGRATIONS", "SCHEMA_VERSION", "SERVICES_SCHEMA", "TABLES",
           "WHAT_TO_DO", "create_store", "run_script"]

#: The schema this code writes; a store with a higher one is refused.
SCHEMA_VERSION = 1


#: The tables of the schema: a store without one of them is refused.
TABLES = ("jobs", "hooks", "deliveries")


#: What an operator can do about a store that is refused.
WHAT_TO_DO = ("move it away (or put back a good copy) to start the daemon without the"
               " jobs and hooks it kept")


#: Where a new store is made before it is renamed into place.
_NEW = STORE_FILE + ".new"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    guid TEXT PRIMARY KEY,
    module TEXT NOT NULL,
    session TEXT,
    overrides TEXT NOT NULL,
    wanted TEXT NOT NULL CHECK (wanted IN ('running', 'stopped')),
    declared INTEGER NOT NULL,
    port INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    hook TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (hook, seq)
) WITHOUT ROWID;
"""


#: The access tables (:mod:`.access_store`): made in a new store, and added to
#: one an older daemon wrote when this one opens it (it reads on without them).
ACCESS_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    digest TEXT NOT NULL,
    scope TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    token TEXT NOT NULL,
    role TEXT NOT NULL,
    remote TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


#: The services' table: made in a new store, and added to one an older daemon
#: wrote when this one opens it (an older one reads on without it).
SERVICES_SCHEMA = """
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    module TEXT NOT NULL,
    session TEXT,
    overrides TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    instances INTEGER NOT NULL,
    surge INTEGER NOT NULL,
    max_unavailable INTEGER NOT NULL,
    declared INTEGER NOT NULL,
    next_instance INTEGER NOT NULL
);
"""


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script``, in the transaction ``db`` has open."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


#: What a store an older daemon wrote gains when it is opened (in one transaction).
MIGRATIONS = (ACCESS_SCHEMA, SERVICES_SCHEMA)


def create_store(state: StateDir) -> None:
    """
    Make a new, empty store of ``state``: written whole (schema and
    version) under another name, then renamed to :data:`STORE_FILE`.
    """
    for suffix in ("", "-journal", "-wal", "-shm"):
        state.remove(_NEW + suffix)  # left by a start that died making one
    os.close(state.open_private(_NEW, os.O_RDWR | os.O_CREAT | os.O_EXCL))
    db = sqlite3.connect(str(state.path / _NEW), isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        for script in (_SCHEMA, ACCESS_SCHEMA, SERVICES_SCHEMA):
            run_script(db, script)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    finally:
        db.close()
    state.replace(_NEW, STORE_FILE)
