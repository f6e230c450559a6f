"""
Changes the store cannot keep, through a real daemon whose state dir really
refuses writes: a full file system (a small tmpfs filled up) or store files
made immutable (``chattr +i``, which root cannot write through either). A
change refused for the store is answered 503 and leaves nothing behind: no
job, no process, no event, no row; the daemon lives on, and once the store
can be written again it takes changes as before.

Both need root (to mount, and to set the immutable attribute): elsewhere
they skip.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import CancelledError, Deferred

from turberfield_twisted.cli.client import ControlClient, ServerEvent
from turberfield_twisted.daemon.statedir import STORE_FILE, StateDir
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone
from turberfield_twisted.worker.parent import make_http

DEMO = "turberfield_twisted.demo.hello"
#: How long any one step may take.
BOUND = 30
#: What the daemon answers a change it could not keep.
UNKEPT = {"error": "the daemon could not keep this in its state store; see its log"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: to mount a tmpfs, or set chattr +i")


async def call(reactor: Any, daemon: Daemon, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    response = await treq.request(method, daemon.url + path, headers=daemon.headers(),
                                  data=data, timeout=BOUND, reactor=reactor)
    content = await response.content()
    return response.code, json.loads(content) if content else None


class Running:
    """
    A daemon with a ready demo job, a stopped one and a hook, and the job events it
    has sent since.
    """

    def __init__(self, reactor: Any, daemon: Daemon):
        self.reactor = reactor
        self.daemon = daemon
        self.guid = ""
        self.pid = 0
        self.stopped = ""
        self.hook = ""
        #: The daemon's log line from which on no process is spawned.
        self.mark = 0
        self.events: list[ServerEvent] = []
        self._http, self._pool = make_http(reactor)
        self._following: Deferred[None] | None = None
        self._next: Deferred[ServerEvent] | None = None

    async def set_up(self) -> None:
        """Launch the jobs (stop one), add the hook, follow the events."""
        reactor, daemon = self.reactor, self.daemon
        await daemon.listening.addTimeout(BOUND, reactor)
        code, job = await call(reactor, daemon, "POST", "/jobs", {"module": DEMO})
        assert code == 201, job
        self.stopped = job["guid"]
        code, job = await call(reactor, daemon, "DELETE", f"/jobs/{self.stopped}")
        code, job = await call(reactor, daemon, "GET",
                               f"/jobs/{self.stopped}?wait=exited&timeout=30")
        assert job["state"] == "exited", job
        code, job = await call(reactor, daemon, "POST", "/jobs", {"module": DEMO})
        assert code == 201, job
        self.guid = job["guid"]
        code, job = await call(reactor, daemon, "GET", f"/jobs/{self.guid}?wait=ready&timeout=30")
        assert job["state"] == "ready", job
        self.pid = job["pid"]
        code, hook = await call(reactor, daemon, "POST", "/hooks",
                                {"url": "http://127.0.0.1:9/hook", "events": ["worker:never"]})
        assert code == 201, hook
        self.hook = hook["id"]
        client = ControlClient(self._http, daemon.url, daemon.token, reactor)
        opened: Deferred[None] = Deferred()

        def seen(event: ServerEvent) -> None:
            if event.event == "open":
                opened.callback(None)
                return
            self.events.append(event)
            waiting, self._next = self._next, None
            if waiting is not None:
                waiting.callback(event)

        self._following = Deferred.fromCoroutine(client.events(seen))
        await opened.addTimeout(BOUND, reactor)

    def next_event(self) -> Deferred[ServerEvent]:
        """The next event the stream sends."""
        self._next = Deferred()
        return self._next

    async def nothing_changed(self) -> None:
        """The two jobs as they were, one hook; no process spawned since ``mark``."""
        reactor, daemon = self.reactor, self.daemon
        _, jobs = await call(reactor, daemon, "GET", "/jobs")
        assert [(j["guid"], j["state"], j["pid"], j["wanted"], j["config"])
                for j in jobs["jobs"]] == [(self.stopped, "exited", None, "stopped", {}),
                                           (self.guid, "ready", self.pid, "running", {})]
        _, hooks = await call(reactor, daemon, "GET", "/hooks")
        assert [h["id"] for h in hooks["hooks"]] == [self.hook]
        _, seen = await call(reactor, daemon, "GET", f"/jobs/{self.guid}/proxy/")
        assert seen["config"]["greeting"] == "hello"
        assert children_of(daemon.pid or 0) == [self.pid]
        assert not any("spawned" in line for line in daemon.lines[self.mark:])
        assert self.events == []

    async def each_change_is_refused(self) -> None:
        """Launch, stop, restart, config, add and remove a hook: each 503, none made."""
        self.mark = len(self.daemon.lines)
        for method, path, body in [
            ("POST", "/jobs", {"module": DEMO}),
            ("DELETE", f"/jobs/{self.guid}", None),
            ("POST", f"/jobs/{self.stopped}/restart", None),
            ("PATCH", f"/jobs/{self.guid}/config", {"greeting": "hej"}),
            ("POST", "/hooks", {"url": "http://127.0.0.1:9/other"}),
            ("DELETE", f"/hooks/{self.hook}", None),
        ]:
            code, answer = await call(self.reactor, self.daemon, method, path, body)
            assert (code, answer) == (503, UNKEPT), (method, path)
            await self.nothing_changed()

    async def a_change_is_made_again(self) -> None:
        """The store takes writes again: a stop is made, and its event is the stream's first."""
        following = self.next_event()
        code, job = await call(self.reactor, self.daemon, "DELETE", f"/jobs/{self.guid}")
        assert code == 202, job
        event = await following.addTimeout(BOUND, self.reactor)
        assert (event.event, event.data["guid"], event.data["event"]) == (
            "state", self.guid, "stopping")
        code, job = await call(self.reactor, self.daemon, "GET",
                               f"/jobs/{self.guid}?wait=exited&timeout=30")
        assert job["state"] == "exited"

    async def end(self) -> None:
        """Stop following; SIGTERM the daemon; wait until it and its workers are gone."""
        if self._following is not None:
            self._following.addErrback(lambda failure: failure.trap(CancelledError))
            self._following.cancel()
        await self._pool.closeCachedConnections()
        workers = children_of(self.daemon.pid or 0)
        self.daemon.signal(signal.SIGTERM)
        await self.daemon.ended.addTimeout(BOUND, self.reactor)
        await wait_gone(self.reactor, workers)


def kept(state: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """What the store of ``state`` keeps (its daemon gone): jobs (guid, wanted) and hook ids."""
    opened = StateDir.open(state)
    opened.lock()
    store = Store.open(opened)
    try:
        return ([(r.guid, r.wanted) for r in store.jobs()], [r.id for r in store.hooks()])
    finally:
        store.close()
        opened.close()


def write_config(path: Path, low: int, high: int) -> Path:
    path.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {low}\n"
                    f"child_port_max = {high}\nready_timeout = 20\n")
    return path


def fill(path: Path) -> None:
    """Write ``path`` until its file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    chunk = b"\0" * 65536
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=BOUND)


@pytest_twisted.ensureDeferred
async def test_a_full_file_system_refuses_each_change_whole(reactor, tmp_path):
    """
    The state dir on a small tmpfs, filled up (a real ENOSPC, as SQLite meets it when
    its WAL must grow): every change is 503 and leaves nothing; once space is back the
    refused launch is nowhere (not in the table, not in the store) and changes are made.
    """
    mount = tmp_path / "small"
    mount.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount))
    try:
        state = mount / "state"
        with free_ports(10) as ports:
            config = write_config(tmp_path / "proactor.cfg", ports.low, ports.high)
            running = Running(reactor, Daemon.start(reactor, state, config=config, cwd=tmp_path))
            try:
                await running.set_up()
                fill(mount / "filler")
                assert os.statvfs(mount).f_bavail == 0
                await running.each_change_is_refused()
                (mount / "filler").unlink()
                await running.nothing_changed()
                await running.a_change_is_made_again()
            finally:
                await running.end()
        assert kept(state) == ([(running.stopped, "stopped"), (running.guid, "stopped")],
                               [running.hook])
    finally:
        unmount(mount)
    assert children_of(os.getpid()) == []


def unmount(mount: Path) -> None:
    """Unmount ``mount``; lazily if something still holds it (a test that failed midway)."""
    try:
        run("umount", str(mount))
    except subprocess.CalledProcessError:
        run("umount", "-l", str(mount))


def immutable(paths: list[Path], on: bool) -> None:
    run("chattr", "+i" if on else "-i", *map(str, paths))


@pytest_twisted.ensureDeferred
async def test_store_files_that_cannot_be_written_refuse_each_change_and_the_daemon_lives(
        reactor, tmp_path):
    """
    The store's files made immutable and written back to disk (where a mapped -shm
    file would now SIGBUS its writer): the store maps no -shm file, every change is
    503 and leaves nothing, the daemon lives, and once the files are writable again
    changes are made.
    """
    state = tmp_path / "state"
    with free_ports(10) as ports:
        config = write_config(tmp_path / "proactor.cfg", ports.low, ports.high)
        running = Running(reactor, Daemon.start(reactor, state, config=config, cwd=tmp_path))
        files: list[Path] = []
        try:
            await running.set_up()
            files = sorted(state.glob(STORE_FILE + "*"))
            try:
                immutable(files, True)
            except subprocess.CalledProcessError as exc:
                files = []
                pytest.skip(f"this file system has no immutable attribute: {exc.stderr!r}")
            os.sync()  # written back: a mapped page is write-protected again
            for path in files:
                with pytest.raises(PermissionError):  # root too
                    open(path, "ab").close()
            await running.each_change_is_refused()
            assert [path.name for path in files] == [STORE_FILE, STORE_FILE + "-wal"]
            immutable(files, False)
            files = []
            await running.a_change_is_made_again()
        finally:
            if files:
                immutable(files, False)
            await running.end()
    assert kept(state) == ([(running.stopped, "stopped"), (running.guid, "stopped")],
                           [running.hook])
    assert children_of(os.getpid()) == []
