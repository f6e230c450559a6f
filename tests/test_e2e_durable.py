"""
Durability end to end, through real daemons, workers and HTTP: a daemon
killed with SIGKILL comes back on the same state dir with its jobs, hooks
and undelivered events; a second daemon on a live state dir exits at once
and changes nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.internet.defer import Deferred

from turberfield_twisted.hooks.rules import verify_signature
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone
from turberfield_twisted.testing.subscriber import Subscriber, listen

DEMO = "turberfield_twisted.demo.hello"


async def call(reactor: Any, daemon: Daemon, method: str, path: str, body: Any = None,
               token: str | None = None) -> tuple[int, Any]:
    headers = {b"Authorization": [f"Bearer {token or daemon.token}".encode()]}
    data = json.dumps(body).encode() if body is not None else None
    response = await treq.request(method, daemon.url + path, headers=headers, data=data,
                                  timeout=60, reactor=reactor)
    content = await response.content()
    return response.code, json.loads(content) if content else None


def write_config(path: Path, low: int, extra: str = "") -> Path:
    path.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {low}\n"
                    f"child_port_max = {low + 49}\nready_timeout = 20\n{extra}")
    return path


async def end(reactor: Any, daemon: Daemon) -> None:
    """Stop ``daemon`` (if it runs) and wait until it and its workers are gone (or kill them)."""
    await daemon.stop(reactor)


@pytest_twisted.ensureDeferred
async def test_sigkill_then_restart_loses_no_job_hook_or_event(reactor, tmp_path, take_ports):
    """
    Jobs running, one stopped by its operator, a hook whose receiver is down with
    events queued; SIGKILL; a new daemon on the same state dir: the running jobs come
    back ready with their guids, sessions and overrides, the stopped one stays stopped,
    the hook is there with its secret, and the receiver gets the queued events and the
    new ones, seq going on.
    """
    config = write_config(tmp_path / "proactor.cfg", take_ports(50).low)
    state = tmp_path / "state"
    hook_port = take_ports(1).low  # the receiver's, down and up again
    subscriber = Subscriber()
    receiver = await listen(reactor, subscriber, hook_port)
    first = Daemon.start(reactor, state, config=config, cwd=tmp_path)
    second = None
    try:
        await first.listening.addTimeout(30, reactor)
        code, hook = await call(reactor, first, "POST", "/hooks",
                                {"url": f"http://127.0.0.1:{hook_port}/hook", "events": ["*"]})
        assert code == 201
        guids = {}
        for name, session, overrides in (("a", "s1", {"greeting": "bonjour"}),
                                         ("b", "s2", None), ("c", "s3", None)):
            code, job = await call(reactor, first, "POST", "/jobs",
                                   {"module": DEMO, "session": session, "config": overrides})
            assert code == 201, job
            guids[name] = job["guid"]
        for guid in guids.values():
            code, job = await call(reactor, first, "GET", f"/jobs/{guid}?wait=ready&timeout=30")
            assert job["state"] == "ready", job
        await call(reactor, first, "DELETE", f"/jobs/{guids['c']}")
        code, job = await call(reactor, first, "GET",
                               f"/jobs/{guids['c']}?wait=exited&timeout=30")
        assert job["state"] == "exited"
        await subscriber.arrived(11).addTimeout(30, reactor)  # 3 x (waiting, starting,
        # ready), then c's stopping and exited
        await receiver.down()

        # The receiver is down: two worker events are queued, kept before each 202.
        for n in (1, 2):
            code, answer = await call(reactor, first, "POST", f"/jobs/{guids['a']}/proxy/notify",
                                      {"n": n})
            assert code == 202, answer
        code, hooks = await call(reactor, first, "GET", "/hooks")
        assert hooks["hooks"][0]["queued"] == 2
        pids = [job["pid"] for job in (await call(reactor, first, "GET", "/jobs"))[1]["jobs"]
                if job["pid"]]
        first.signal(signal.SIGKILL)
        await first.ended.addTimeout(30, reactor)
        await wait_gone(reactor, pids)  # their lifeline went with the daemon

        receiver = await listen(reactor, subscriber, hook_port)
        second = Daemon.start(reactor, state, config=config, cwd=tmp_path)
        await second.listening.addTimeout(30, reactor)
        for name in ("a", "b"):
            code, job = await call(reactor, second, "GET",
                                   f"/jobs/{guids[name]}?wait=ready&timeout=30")
            assert job["state"] == "ready", job
        code, a = await call(reactor, second, "GET", f"/jobs/{guids['a']}/proxy/")
        assert (a["guid"], a["session"], a["config"]["greeting"]) == (guids["a"], "s1",
                                                                      "bonjour")
        code, b = await call(reactor, second, "GET", f"/jobs/{guids['b']}")
        assert (b["session"], b["restarts"]) == ("s2", 0)
        code, c = await call(reactor, second, "GET", f"/jobs/{guids['c']}")
        assert (c["state"], c["wanted"], c["pid"]) == ("exited", "stopped", None)
        code, hooks = await call(reactor, second, "GET", "/hooks")
        assert [h["id"] for h in hooks["hooks"]] == [hook["id"]]

        # 11 before; the 2 queued; then a's and b's waiting, starting, ready.
        await subscriber.arrived(19).addTimeout(30, reactor)
        assert subscriber.all_signed(hook["secret"])
        firsts: dict[int, str] = {}
        for seq, event in subscriber.events():
            firsts.setdefault(seq, event)  # a subscriber drops a seq it has seen
        assert list(firsts) == list(range(1, len(firsts) + 1))
        assert [firsts[12], firsts[13]] == ["notified", "notified"]
        assert sorted(firsts[seq] for seq in range(14, 20)) == [
            "ready", "ready", "starting", "starting", "waiting", "waiting"]
        body = json.loads(subscriber.received[-1][0])
        assert verify_signature(hook["secret"], subscriber.received[-1][0],
                                subscriber.received[-1][1]["X-Signature"])
        assert body["guid"] in (guids["a"], guids["b"])
    finally:
        await receiver.down()
        if not first.ended.called:
            await end(reactor, first)
        if second is not None:
            await end(reactor, second)
    assert children_of(os.getpid()) == []


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file and directory under a directory (logs/ too): its mode, mtime and bytes."""
    return {str(p.relative_to(path)): (p.stat().st_mode, p.stat().st_mtime_ns,
                                       b"" if p.is_dir() else p.read_bytes())
            for p in sorted(path.rglob("*"))}


@pytest_twisted.ensureDeferred
async def test_a_second_daemon_on_a_live_state_dir_exits_at_once_changing_nothing(
        reactor, tmp_path, take_ports):
    """It exits 1 with one line naming the state dir and the first daemon's pid; no file
    of the state dir changes, and the first daemon's token still works."""
    config = write_config(tmp_path / "proactor.cfg", take_ports(50).low)
    state = tmp_path / "state"
    first = Daemon.start(reactor, state, config=config, cwd=tmp_path)
    try:
        await first.listening.addTimeout(30, reactor)
        # it writes its pid into the lock file again once started, after it listens
        await first.logged("ready: the control API listens").addTimeout(30, reactor)
        before = snapshot(state)
        started = time.monotonic()
        second = Daemon.start(reactor, state, config=config, cwd=tmp_path)
        status = await second.ended.addTimeout(30, reactor)
        elapsed = time.monotonic() - started
        second.listening.addErrback(lambda _: None)
        assert (status.code, status.signal) == (1, None)
        assert second.lines == [f"proactor: the state directory {state} is in use by another"
                                f" daemon (pid {first.pid})"], second.lines
        assert snapshot(state) == before
        code, jobs = await call(reactor, first, "GET", "/jobs")
        assert (code, jobs) == (200, {"jobs": []})
        print(f"the second daemon exited in {elapsed:.2f}s")
    finally:
        await end(reactor, first)


@pytest_twisted.ensureDeferred
async def test_a_world_writable_state_dir_is_refused_with_one_line(reactor, tmp_path, take_ports):
    """A state dir anyone may write to stops the daemon at once, saying how to fix it."""
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    daemon = Daemon.start(reactor, state,
                          config=write_config(tmp_path / "p.cfg", take_ports(50).low),
                          cwd=tmp_path)
    daemon.listening.addErrback(lambda _: None)
    status = await daemon.ended.addTimeout(30, reactor)
    assert status.code == 1
    assert daemon.lines == [f"proactor: the state directory {state} is group- or"
                            f" world-writable (mode 0777): chmod 700 it, or choose another"]
    assert list(state.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_a_clean_stop_keeps_the_last_events_for_the_next_start(reactor, tmp_path,
                                                                      take_ports):
    """SIGTERM while a hook's receiver is down: every job's stopping and exited are kept
    and delivered, in order, once a new daemon starts and the receiver is back."""
    config = write_config(tmp_path / "proactor.cfg", take_ports(50).low)
    state = tmp_path / "state"
    hook_port = take_ports(1).low  # the receiver's, not listening at first
    subscriber = Subscriber()
    first = Daemon.start(reactor, state, config=config, cwd=tmp_path)
    second = None
    try:
        await first.listening.addTimeout(30, reactor)
        code, _ = await call(reactor, first, "POST", "/hooks",
                             {"url": f"http://127.0.0.1:{hook_port}/hook",
                              "events": ["stopping", "exited"]})
        assert code == 201
        code, job = await call(reactor, first, "POST", "/jobs", {"module": DEMO})
        code, job = await call(reactor, first, "GET", f"/jobs/{job['guid']}?wait=ready&timeout=30")
        assert job["state"] == "ready"
        await end(reactor, first)  # the receiver is not listening at all
        receiver = await listen(reactor, subscriber, hook_port)
        try:
            second = Daemon.start(reactor, state, config=config, cwd=tmp_path)
            await second.listening.addTimeout(30, reactor)
            await subscriber.arrived(2).addTimeout(30, reactor)
        finally:
            await receiver.down()
        assert subscriber.events()[:2] == [(1, "stopping"), (2, "exited")]
        assert all(json.loads(body)["guid"] == job["guid"] for body, _ in subscriber.received)
    finally:
        if second is not None:
            await end(reactor, second)
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_an_empty_or_schemaless_store_stops_the_daemon_with_one_line(reactor, tmp_path):
    """A state dir whose proactor.db is empty (0 bytes) or lacks the schema: the daemon
    exits 1 with one line naming the file and saying what to do, and leaves it as it is;
    a state dir with no store yet starts fresh."""
    with free_ports() as ports:
        config = write_config(tmp_path / "p.cfg", ports.low)
        for name, make in (("empty", lambda path: path.write_bytes(b"")),
                           ("schemaless", _schemaless)):
            state = tmp_path / name
            state.mkdir(mode=0o700)
            make(state / "proactor.db")
            before = (state / "proactor.db").read_bytes()
            daemon = Daemon.start(reactor, state, config=config, cwd=tmp_path)
            if await first_of(reactor, daemon) == "listening":
                await end(reactor, daemon)
                raise AssertionError(f"the daemon started on the {name} store: {daemon.lines}")
            status = daemon.ended.result
            assert (status.code, status.signal) == (1, None), daemon.lines
            assert len(daemon.lines) == 1, daemon.lines
            assert daemon.lines[0].startswith(f"proactor: the store {state}/proactor.db is ")
            assert "move it away" in daemon.lines[0]
            assert (state / "proactor.db").read_bytes() == before
        fresh = Daemon.start(reactor, tmp_path / "fresh", config=config, cwd=tmp_path)
        try:
            await fresh.listening.addTimeout(30, reactor)
            code, jobs = await call(reactor, fresh, "GET", "/jobs")
            assert (code, jobs) == (200, {"jobs": []})
        finally:
            await end(reactor, fresh)
    assert children_of(os.getpid()) == []


def _schemaless(path: Path) -> None:
    """An SQLite database with a table of its own and none of the store's."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()


async def first_of(reactor: Any, daemon: Daemon) -> str:
    """"listening" or "ended": whichever ``daemon`` does first (within 30 s)."""
    first: Deferred[str] = Deferred()

    def saw(result: Any, what: str) -> None:
        if not first.called:
            first.callback(what)

    daemon.listening.addCallbacks(saw, lambda _: None, callbackArgs=("listening",))
    daemon.ended.addCallback(lambda status: (saw(status, "ended"), status)[1])
    return await first.addTimeout(30, reactor)
