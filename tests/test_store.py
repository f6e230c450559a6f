"""The durable store: what it keeps, how the file is made, and what it refuses."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest

from turberfield_twisted.daemon.statedir import STORE_FILE, StateDir
from turberfield_twisted.daemon.store import (
    HookRecord,
    JobRecord,
    QueuedRecord,
    ServiceRecord,
    Store,
)
from turberfield_twisted.errors import StoreFailed


@pytest.fixture
def store(state):
    store = Store.open(state)
    yield store
    store.close()


def test_the_file_is_0600_in_wal_mode(state, store):
    """
    The store is created 0600, in WAL mode with exclusive locking (so no -shm file
    is made), with synchronous NORMAL by default.
    """
    path = state.path / STORE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA locking_mode").fetchone()[0] == "exclusive"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.put_job(JobRecord("g", "m", None, {}))
    wal = state.path / (STORE_FILE + "-wal")
    assert stat.S_IMODE(wal.stat().st_mode) & 0o077 == 0
    assert not (state.path / (STORE_FILE + "-shm")).exists()


def test_full_sync_is_chosen_by_name(state):
    """store_sync = full sets synchronous FULL."""
    store = Store.open(state, sync="full")
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        store.close()


def test_jobs_are_kept_in_order_and_replaced_in_place(store):
    """put_job inserts or replaces (keeping the first place); forget_job deletes."""
    store.put_job(JobRecord("a", "m.one", "s1", {"greeting": "hi"}, port=24001))
    store.put_job(JobRecord("b", "m.two", None, {}, declared=True))
    store.put_job(JobRecord("a", "m.one", "s1", {"greeting": "ho"}, wanted="stopped"))
    assert store.jobs() == [
        JobRecord("a", "m.one", "s1", {"greeting": "ho"}, wanted="stopped"),
        JobRecord("b", "m.two", None, {}, declared=True),
    ]
    store.forget_job("a")
    store.forget_job("never-there")
    assert [job.guid for job in store.jobs()] == ["b"]


def test_hooks_keep_their_secret_seq_and_queue_in_order(store):
    """A hook's records come back in seq order; done and dropped ones are gone."""
    store.add_hook(HookRecord("h1", "http://127.0.0.1:1/x", ("ready", "*"), "sekrit"))
    store.add_hook(HookRecord("h2", "http://127.0.0.1:2/y", ("*",), "other"))
    for seq in (1, 2, 3, 4):
        store.queue("h1", QueuedRecord(seq, "ready", f'{{"seq":{seq}}}'.encode()))
    store.done("h1", 1)
    store.queue("h1", QueuedRecord(5, "exited", b"{}"), dropped=2)
    h1, h2 = store.hooks()
    assert (h1.id, h1.url, h1.events, h1.secret, h1.seq) == (
        "h1", "http://127.0.0.1:1/x", ("ready", "*"), "sekrit", 5)
    assert [(q.seq, q.event) for q in h1.queued] == [(3, "ready"), (4, "ready"), (5, "exited")]
    assert h1.queued[0].body == b'{"seq":3}'
    assert (h2.seq, h2.queued) == (0, ())
    store.remove_hook("h1")
    assert [hook.id for hook in store.hooks()] == ["h2"]
    assert store._db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0


def test_a_secret_is_not_in_a_records_repr():
    """Hook secrets and job overrides stay out of reprs (and so out of logs)."""
    assert "sekrit" not in repr(HookRecord("h", "u", ("*",), "sekrit"))
    assert "api-key-value" not in repr(JobRecord("g", "m", None, {"api_key": "api-key-value"}))


def test_it_comes_back_after_the_process_is_killed(tmp_path):
    """A commit survives SIGKILL of the writer the instant after: a child writes, then dies."""
    path = tmp_path / "state"
    code = textwrap.dedent(f"""
        import os, signal
        from turberfield_twisted.daemon.statedir import StateDir
        from turberfield_twisted.daemon.store import JobRecord, Store
        state = StateDir.open({str(path)!r})
        state.lock()
        store = Store.open(state)
        store.put_job(JobRecord("g1", "m", "s", {{"k": "v"}}))
        store.put_job(JobRecord("g1", "m", "s", {{"k": "v"}}, wanted="stopped"))
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    done = subprocess.run([sys.executable, "-c", code], timeout=60, check=False)
    assert done.returncode == -9
    state = StateDir.open(path)
    state.lock()  # the dead writer's lock went with it
    store = Store.open(state)
    try:
        assert store.jobs() == [JobRecord("g1", "m", "s", {"k": "v"}, wanted="stopped")]
    finally:
        store.close()
        state.close()


def test_a_symlink_at_the_store_is_refused(state, tmp_path):
    """A link planted at proactor.db (or its WAL) is never followed."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"")
    os.symlink(victim, state.path / STORE_FILE)
    with pytest.raises(StoreFailed, match="symbolic link"):
        Store.open(state)
    os.unlink(state.path / STORE_FILE)
    os.symlink(victim, state.path / (STORE_FILE + "-wal"))
    with pytest.raises(StoreFailed, match="-wal is not a regular file"):
        Store.open(state)
    assert victim.read_bytes() == b""


def test_a_newer_schema_is_refused(state):
    """A store written by a newer version is not read (nor changed)."""
    Store.open(state).close()
    db = sqlite3.connect(state.path / STORE_FILE)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreFailed, match="newer version"):
        Store.open(state)


def test_a_file_that_is_not_a_database_is_refused_by_name(state):
    """Garbage in the file: a StoreFailed naming the file, not a traceback."""
    (state.path / STORE_FILE).write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreFailed) as caught:
        Store.open(state)
    assert str(state.path / STORE_FILE) in str(caught.value)


def test_a_write_that_fails_is_a_store_failure(store):
    """An SQLite error while writing is a StoreFailed saying what could not be done."""
    store.close()
    with pytest.raises(StoreFailed, match="could not keep a job"):
        store.put_job(JobRecord("g", "m", None, {}))


#: The tables a daemon wrote before services (and access), as a store of then holds them.
_BEFORE_SERVICES = """
CREATE TABLE jobs (guid TEXT PRIMARY KEY, module TEXT NOT NULL, session TEXT,
    overrides TEXT NOT NULL, wanted TEXT NOT NULL CHECK (wanted IN ('running', 'stopped')),
    declared INTEGER NOT NULL, port INTEGER NOT NULL);
CREATE TABLE hooks (id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT NOT NULL,
    secret TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE deliveries (hook TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    body BLOB NOT NULL, PRIMARY KEY (hook, seq)) WITHOUT ROWID;
INSERT INTO jobs VALUES ('a', 'm.one', 's1', '{"greeting": "hi"}', 'running', 0, 24001);
PRAGMA user_version = 1;
"""


def test_a_store_an_older_daemon_wrote_gains_the_services_table_keeping_what_it_held(state):
    """
    An existing store from before services gains their table (as it gains the access
    tables: the schema's version stays 1); its jobs stay as they were.
    """
    path = state.path / STORE_FILE
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(path)
    db.executescript(_BEFORE_SERVICES)
    db.close()
    store = Store.open(state)
    try:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert store.jobs() == [JobRecord("a", "m.one", "s1", {"greeting": "hi"}, port=24001)]
        assert store.services() == []
        store.put_service(ServiceRecord("web", "m.one", None, {}, "127.0.0.1", 8000, 4))
        assert [s.name for s in store.services()] == ["web"]
    finally:
        store.close()


def test_services_are_kept_in_order_with_their_counter_and_forgotten(store):
    """put_service inserts or replaces in place (its next instance number too); forget deletes."""
    store.put_service(ServiceRecord("web", "m.one", "s", {"greeting": "hi"}, "::1", 8000, 4,
                                    surge=2, max_unavailable=1, next_instance=5))
    store.put_service(ServiceRecord("api", "m.two", None, {}, "127.0.0.1", 8001,
                                    declared=True))
    store.put_service(ServiceRecord("web", "m.one", "s", {"greeting": "ho"}, "::1", 8000, 6,
                                    next_instance=9))
    assert store.services() == [
        ServiceRecord("web", "m.one", "s", {"greeting": "ho"}, "::1", 8000, 6, next_instance=9),
        ServiceRecord("api", "m.two", None, {}, "127.0.0.1", 8001, declared=True),
    ]
    store.forget_service("web")
    store.forget_service("never-there")
    assert [s.name for s in store.services()] == ["api"]


def test_an_empty_store_file_is_refused_saying_what_to_do(state):
    """A 0-byte proactor.db is not a new store: refused (its jobs are lost), and left as it is."""
    (state.path / STORE_FILE).write_bytes(b"")
    with pytest.raises(StoreFailed, match=r"is empty .*move it away") as caught:
        Store.open(state)
    assert str(state.path / STORE_FILE) in str(caught.value)
    assert (state.path / STORE_FILE).read_bytes() == b""


@pytest.mark.parametrize("schema", [
    "",  # an SQLite file with nothing in it
    "CREATE TABLE other (x)",  # someone else's database
    "CREATE TABLE jobs (x); PRAGMA user_version = 1",  # ours, less two tables
])
def test_a_database_without_the_schema_is_refused_saying_what_to_do(state, schema):
    """An SQLite file that lacks the store's version or tables is refused, not filled in."""
    db = sqlite3.connect(state.path / STORE_FILE)
    db.executescript(schema or "PRAGMA user_version = 0")
    db.execute("VACUUM")  # a real file, with a header, even with no table
    db.close()
    before = (state.path / STORE_FILE).read_bytes()
    with pytest.raises(StoreFailed, match=r"is not one this daemon wrote .*move it away"):
        Store.open(state)
    assert (state.path / STORE_FILE).read_bytes() == before


def test_a_new_store_is_made_whole_then_renamed_into_place(state):
    """No store yet: one is made with its schema, and nothing is left under the new name."""
    state.remove(STORE_FILE)
    (state.path / (STORE_FILE + ".new")).write_bytes(b"left by a start that died")
    Store.open(state).close()
    assert sorted(p.name for p in state.path.iterdir()
                  if p.name.startswith(STORE_FILE)) == [STORE_FILE]
    store = Store.open(state)  # and it opens again as the store it is
    try:
        assert store.jobs() == [] and store.hooks() == []
    finally:
        store.close()
