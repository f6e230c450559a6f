"""
The watch mode's timing and logic on a Clock: a burst of changes is one
check; a change during a check is checked after it; a clean import restarts
the module's jobs that are wanted running; the same error is shown once.
The throwaway import is a Deferred the test fires (end to end, it is a real
process: tests/test_e2e_watch.py).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from turberfield_twisted.daemon import watch
from turberfield_twisted.daemon.watch import EVENT_FAILED, EVENT_RESTART, Watcher, _Watched
from turberfield_twisted.jobs.job import Job, Wanted


class FakeInitiator:
    """What the watcher uses of an Initiator: settings, jobs, restart, events, services."""

    def __init__(self) -> None:
        self.settings = SimpleNamespace(initiator=SimpleNamespace(pythonpath=""), modules={})
        self.workers = {guid: Job(guid=guid, port=0, session=None, module=module)
                        for guid, module in (("a", "m"), ("b", "m"), ("c", "other"))}
        self.workers["b"].wanted = Wanted.STOPPED
        self.services = SimpleNamespace(groups={})
        self.restarted: list[str] = []
        self.events: list[tuple[str, str]] = []

    def restart(self, guid: str) -> None:
        self.restarted.append(guid)

    def worker_event(self, guid: str, name: str, data: Any = None) -> None:
        self.events.append((guid, name))


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[Deferred[str | None]]:
    """Each throwaway import the watcher starts, as a Deferred the test fires."""
    started: list[Deferred[str | None]] = []

    async def check_import(*args: Any, **kwargs: Any) -> str | None:
        started.append(Deferred())
        return await started[-1]

    monkeypatch.setattr(watch, "check_import", check_import)
    return started


def watcher_of(clock: Clock) -> tuple[Watcher, FakeInitiator]:
    initiator = FakeInitiator()
    watcher = Watcher(clock, initiator, debounce=0.5)  # type: ignore[arg-type]
    watcher.running = True
    watcher._watched["m"] = _Watched("m")
    return watcher, initiator


def test_a_burst_of_changes_is_one_check(checks: list[Deferred[str | None]]) -> None:
    """Changes closer together than the debounce are checked once, after the last."""
    clock = Clock()
    watcher, initiator = watcher_of(clock)
    for name in ("m.py", "m.py", "n.py"):
        watcher._note("m", f"/src/{name}")
        clock.advance(0.4)
    assert checks == []
    clock.advance(0.1)
    assert len(checks) == 1
    checks[0].callback(None)
    assert initiator.restarted == ["a"]  # wanted running, of module m: b is stopped, c other
    assert initiator.events == [("a", EVENT_RESTART)]


def test_a_change_during_a_check_is_checked_after_it(checks: list[Deferred[str | None]]) -> None:
    """A change while the import runs is not lost: one more check once it is done."""
    clock = Clock()
    watcher, initiator = watcher_of(clock)
    watcher._note("m", "/src/m.py")
    clock.advance(0.5)
    watcher._note("m", "/src/m.py")
    clock.advance(0.5)
    assert len(checks) == 1  # still running
    checks[0].callback("SyntaxError: invalid syntax")
    assert len(checks) == 2
    checks[1].callback(None)
    assert initiator.restarted == ["a"]


def test_the_same_error_is_shown_once_and_a_fix_restarts_once(
        checks: list[Deferred[str | None]]) -> None:
    """A failed import restarts nothing; the same error again is not shown again."""
    clock = Clock()
    watcher, initiator = watcher_of(clock)
    for error in ("SyntaxError: x", "SyntaxError: x", None):
        watcher._note("m", "/src/m.py")
        clock.advance(0.5)
        checks[-1].callback(error)
    assert initiator.events == [("a", EVENT_FAILED), ("a", EVENT_RESTART)]
    assert initiator.restarted == ["a"]


def test_a_same_size_edit_within_a_second_runs_the_new_code(tmp_path) -> None:
    """
    Python trusts a .pyc whose source has the same size and whole second of mtime:
    drop_bytecode (run before a watch restart) makes the next run compile the new source.
    """
    import os
    import py_compile
    import subprocess
    import sys

    from turberfield_twisted.daemon.importcheck import drop_bytecode

    source = tmp_path / "quick.py"
    source.write_text('print("version 1")\n')
    py_compile.compile(str(source), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    stamp = source.stat().st_mtime_ns
    source.write_text('print("version 2")\n')
    os.utime(source, ns=(stamp, stamp))  # the same second, as a quick save can be

    def run() -> str:
        return subprocess.run([sys.executable, "-P", "-m", "quick"], capture_output=True,
                              text=True, timeout=30, check=True,
                              env={"PYTHONPATH": str(tmp_path)}).stdout.strip()

    assert run() == "version 1"  # the stale bytecode: what a restart would have run
    drop_bytecode([str(source)])
    assert run() == "version 2"
