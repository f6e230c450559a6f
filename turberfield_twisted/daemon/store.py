"""
The durable store: what the daemon keeps across its restarts, in SQLite
(the standard library's ``sqlite3``) in the state directory.

It holds each job's guid, module, session, overrides, last port and the
state its operator wants (running or stopped), and whether it is declared
in the config; each service (its module, address, instance count,
rollout settings, session and overrides, and the number its next
instance takes); each web-hook's id, URL, events, secret and last
sequence number; and each hook's undelivered records, in order. A store
an older daemon wrote gains the tables it lacks when it is opened. Every
write is committed before the call returns, or raises
:class:`~.errors.StoreFailed` having changed nothing: in WAL mode with
``synchronous=NORMAL``
(the default) a commit survives a crash of the daemon (SIGKILL included)
the instant after; with ``full`` it also survives a power cut, at the cost
of an ``fsync`` per commit.

The file is created mode 0600 with ``O_NOFOLLOW`` (it holds hook secrets
and jobs' overrides) and is written only through this module. A new store
is made whole under another name (its schema written) and then renamed
into place, so a store file that exists and is empty, or holds no schema,
was not written by this daemon (or lost what it held): it is refused, never
taken for a new store. The daemon holds it in SQLite's exclusive locking
mode (it holds the state dir alone anyway): no other process reads it while
the daemon runs, and SQLite keeps the WAL index in memory, with no ``-shm``
file mapped (a mapped file that can no longer be written kills a process
with SIGBUS; a write that fails is a StoreFailed). Calls block the reactor
for the time of a commit (tens of microseconds; see
``benchmarks/durable.py``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from turberfield_twisted.config.section_keys import SYNC_MODES
from turberfield_twisted.daemon.statedir import STORE_FILE, StateDir
from turberfield_twisted.daemon.store_records import (
    HookRecord,
    JobRecord,
    QueuedRecord,
    ServiceRecord,
)
from turberfield_twisted.daemon.store_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
    WHAT_TO_DO,
    create_store,
    run_script,
)
from turberfield_twisted.errors import StateDirError, StoreFailed

# The records are re-exported: their home is :mod:`.store_records`.
__all__ = ["HookRecord", "JobRecord", "QueuedRecord", "ServiceRecord", "Store"]


class Store:
    """
    The store at ``path``, through an open ``sqlite3`` connection. Use
    :meth:`open`. Every method raises :class:`~.errors.StoreFailed` if
    SQLite does.
    """

    def __init__(self, connection: sqlite3.Connection, path: str):
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, state: StateDir, sync: str = "normal") -> Store:
        """
        Open (creating it) the store of ``state``, which should be locked.
        Raise :class:`StoreFailed` if it can't be read or was written by a
        newer version.
        """
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {', '.join(SYNC_MODES)}")
        path = str(state.path / STORE_FILE)
        try:
            for suffix in ("-wal", "-shm", "-journal"):
                found = state.lstat(STORE_FILE + suffix)
                if found is not None and not stat.S_ISREG(found.st_mode):
                    raise StateDirError(f"{path}{suffix} is not a regular file: remove it")
            if state.lstat(STORE_FILE) is None:
                create_store(state)
            fd = state.open_private(STORE_FILE, os.O_RDWR)
            size = os.fstat(fd).st_size
            os.close(fd)
        except StateDirError as exc:
            raise StoreFailed(str(exc)) from None
        except sqlite3.Error as exc:
            raise StoreFailed(f"cannot make a new store at {path}: {exc}") from None
        if size == 0:
            raise StoreFailed(f"the store {path} is empty (0 bytes), so its kept jobs are"
                              f" lost or it was never written: {WHAT_TO_DO}")
        try:
            db = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreFailed(f"cannot open the store {path}: {exc}: {WHAT_TO_DO}") from None
        store = cls(db, path)
        try:
            store._setup(sync)
        except BaseException:
            db.close()
            raise
        return store

    def _setup(self, sync: str) -> None:
        with self._errors("open"):
            # Before the first read: the WAL index then lives in this process's
            # heap, not in a -shm file mapped into memory (whose loss is a SIGBUS).
            locking = self._db.execute("PRAGMA locking_mode=EXCLUSIVE").fetchone()[0]
            if str(locking).lower() != "exclusive":
                raise StoreFailed(f"the store {self.path} can't be locked ({locking})")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreFailed(f"the store {self.path} was written by a newer version"
                                  f" (schema {version}; this one reads {SCHEMA_VERSION})")
            tables = {name for (name,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [table for table in TABLES if table not in tables]
            if version < 1 or missing:
                lacks = f"table {', '.join(missing)}" if version >= 1 else "schema version"
                raise StoreFailed(f"the store {self.path} is not one this daemon wrote"
                                  f" (it has no {lacks}): {WHAT_TO_DO}")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreFailed(f"the store {self.path} can't use WAL mode ({mode})")
            self._db.execute(f"PRAGMA synchronous={sync.upper()}")
            with self._transaction():  # the migration of a store an older daemon wrote
                for script in MIGRATIONS:
                    run_script(self._db, script)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            advice = f": {WHAT_TO_DO}" if doing == "open" else ""
            raise StoreFailed(f"the store {self.path} could not {doing}: {exc}{advice}") from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction, committed on leaving (rolled back on an error)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already
                self._db.execute("ROLLBACK")
            raise

    def read(self, doing: str, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """The rows of one query; :class:`StoreFailed` (saying it could not ``doing``)."""
        with self._errors(doing):
            return list(self._db.execute(sql, args).fetchall())

    def write(self, doing: str, *statements: tuple[str, tuple[object, ...]]) -> None:
        """Run ``statements`` as one committed transaction (see :meth:`_write`)."""
        self._write(doing, *statements)

    def _write(self, doing: str, *statements: tuple[str, tuple[object, ...]]) -> None:
        """Run ``statements`` as one committed transaction."""
        with self._errors(doing):
            if len(statements) == 1:
                self._db.execute(*statements[0])
                return
            with self._transaction():
                for statement in statements:
                    self._db.execute(*statement)

    # -- jobs --------------------------------------------------------------

    def jobs(self) -> list[JobRecord]:
        """Every job kept, in the order each was first kept."""
        with self._errors("read its jobs"):
            rows = self._db.execute(
                "SELECT guid, module, session, overrides, wanted, declared, port"
                " FROM jobs ORDER BY rowid").fetchall()
        return [JobRecord(guid, module, session, json.loads(overrides), wanted,
                          bool(declared), port)
                for guid, module, session, overrides, wanted, declared, port in rows]

    def put_job(self, record: JobRecord) -> None:
        """Keep ``record`` (replacing the one of its guid; its place in order stays)."""
        self._write("keep a job", (
            "INSERT INTO jobs (guid, module, session, overrides, wanted, declared, port)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guid) DO UPDATE SET"
            " module = excluded.module, session = excluded.session,"
            " overrides = excluded.overrides, wanted = excluded.wanted,"
            " declared = excluded.declared, port = excluded.port",
            (record.guid, record.module, record.session,
             json.dumps(dict(record.overrides), sort_keys=True), record.wanted,
             int(record.declared), record.port)))

    def forget_job(self, guid: str) -> None:
        """Forget the job ``guid`` (nothing if it is not kept)."""
        self._write("forget a job", ("DELETE FROM jobs WHERE guid = ?", (guid,)))

    # -- services ----------------------------------------------------------

    def services(self) -> list[ServiceRecord]:
        """Every service kept, in the order each was first kept."""
        with self._errors("read its services"):
            rows = self._db.execute(
                "SELECT name, module, session, overrides, host, port, instances, surge,"
                " max_unavailable, declared, next_instance FROM services ORDER BY rowid"
            ).fetchall()
        return [ServiceRecord(name, module, session, json.loads(overrides), host, port,
                              instances, surge, max_unavailable, bool(declared), next_instance)
                for name, module, session, overrides, host, port, instances, surge,
                max_unavailable, declared, next_instance in rows]

    def put_service(self, record: ServiceRecord) -> None:
        """Keep ``record`` (replacing the one of its name; its place in order stays)."""
        self._write("keep a service", (
            "INSERT INTO services (name, module, session, overrides, host, port, instances,"
            " surge, max_unavailable, declared, next_instance)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
            " module = excluded.module, session = excluded.session,"
            " overrides = excluded.overrides, host = excluded.host, port = excluded.port,"
            " instances = excluded.instances, surge = excluded.surge,"
            " max_unavailable = excluded.max_unavailable, declared = excluded.declared,"
            " next_instance = excluded.next_instance",
            (record.name, record.module, record.session,
             json.dumps(dict(record.overrides), sort_keys=True), record.host, record.port,
             record.instances, record.surge, record.max_unavailable, int(record.declared),
             record.next_instance)))

    def forget_service(self, name: str) -> None:
        """Forget service ``name`` (nothing if it is not kept)."""
        self._write("forget a service", ("DELETE FROM services WHERE name = ?", (name,)))

    # -- web-hooks ---------------------------------------------------------

    def hooks(self) -> list[HookRecord]:
        """Every web-hook kept, each with its undelivered records in order."""
        with self._errors("read its hooks"):
            hooks = self._db.execute(
                "SELECT id, url, events, secret, seq FROM hooks ORDER BY rowid").fetchall()
            queued: dict[str, list[QueuedRecord]] = {}
            for hook, seq, event, body in self._db.execute(
                    "SELECT hook, seq, event, body FROM deliveries ORDER BY hook, seq"):
                queued.setdefault(hook, []).append(QueuedRecord(seq, event, bytes(body)))
        return [HookRecord(hook_id, url, tuple(json.loads(events)), secret, seq,
                           tuple(queued.get(hook_id, ())))
                for hook_id, url, events, secret, seq in hooks]

    def add_hook(self, record: HookRecord) -> None:
        """Keep a new web-hook (its queued records are not written here)."""
        self._write("keep a hook", (
            "INSERT INTO hooks (id, url, events, secret, seq) VALUES (?, ?, ?, ?, ?)",
            (record.id, record.url, json.dumps(list(record.events)), record.secret,
             record.seq)))

    def remove_hook(self, hook_id: str) -> None:
        """Forget a web-hook and its undelivered records."""
        self._write("forget a hook",
                    ("DELETE FROM deliveries WHERE hook = ?", (hook_id,)),
                    ("DELETE FROM hooks WHERE id = ?", (hook_id,)))

    def queue(self, hook_id: str, record: QueuedRecord, dropped: int | None = None) -> None:
        """
        Keep ``record`` as hook ``hook_id``'s latest (its seq is the hook's
        seq from now on); forget its record ``dropped`` (one the queue had no
        room for), if given.
        """
        statements = [
            ("INSERT OR REPLACE INTO deliveries (hook, seq, event, body) VALUES (?, ?, ?, ?)",
             (hook_id, record.seq, record.event, record.body)),
            ("UPDATE hooks SET seq = ? WHERE id = ?", (record.seq, hook_id)),
        ]
        if dropped is not None:
            statements.append(("DELETE FROM deliveries WHERE hook = ? AND seq = ?",
                               (hook_id, dropped)))
        self._write("queue a hook record", *statements)

    def done(self, hook_id: str, seq: int) -> None:
        """Forget hook ``hook_id``'s record ``seq``: delivered, or dropped."""
        self._write("forget a hook record",
                    ("DELETE FROM deliveries WHERE hook = ? AND seq = ?", (hook_id, seq)))

    # -- the file ----------------------------------------------------------

    def close(self) -> None:
        """Close the store (SQLite checkpoints its WAL into the file)."""
        self._db.close()
