"""
The watch mode end to end: the whole daemon (``tap.makeService``) in this
process with a real worker whose module, in a source dir of the test's own,
says ``watch = true``; the test edits that file as an editor would.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher

from turberfield_twisted.daemon.watch import EVENT_FAILED, EVENT_RESTART, Watcher
from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState
from turberfield_twisted.testing.ports import free_ports

MODULE = "watched_worker"

SOURCE = '''
import sys
from turberfield_twisted.demo.hello import Hello
from turberfield_twisted.worker import run_worker

if __name__ == "__main__":
    print("{version}", flush=True)
    run_worker(Hello)
'''


def save(path: Path, text: str) -> None:
    """Save as an editor does: a new file beside it, renamed over it."""
    spare = path.with_name(f".{path.name}.swp")
    spare.write_text(text)
    os.replace(spare, path)


@contextlib.asynccontextmanager
async def watching_daemon(reactor: Any, where: Path, src: Path) -> AsyncIterator[Any]:
    """The whole daemon in this process, its workers' path ``src``; yields its services."""
    from turberfield_twisted.tap import Options, makeService

    with free_ports(20) as ports, free_ports(1) as api:
        (where / "proactor.cfg").write_text(
            f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low}\n"
            f"child_port_max = {ports.high}\nready_timeout = 30\npythonpath = {src}\n"
            f"[{MODULE}]\nwatch = true\n")
        options = Options()
        options.parseOptions(["--config", str(where / "proactor.cfg"), "--state-dir",
                              str(where / "state"), "--listen",
                              f"tcp:{api.low}:interface=127.0.0.1"])
        kept = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGUSR1)}
        top = makeService(options)
        top.privilegedStartService()
        top.startService()
        try:
            yield top
        finally:
            await top.stopService()
            for sig, handler in kept.items():
                signal.signal(sig, handler)


class Seen:
    """The job events and the log lines of a run, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self.logged: list[str] = []
        self._waiting: list[tuple[Any, Deferred[Any]]] = []

    def event(self, event: JobEvent) -> None:
        self.events.append(event)
        self._tell(event)

    def log(self, event: dict[str, Any]) -> None:
        if str(event.get("log_format", "")).startswith("watch:"):
            from twisted.logger import formatEvent

            self.logged.append(formatEvent(event))
            self._tell(self.logged[-1])

    def _tell(self, item: Any) -> None:
        for match, d in list(self._waiting):
            if match(item):
                self._waiting.remove((match, d))
                d.callback(item)

    def next(self, match: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._waiting.append((match, d))
        return d

    def named(self, name: str) -> list[JobEvent]:
        return [event for event in self.events if event.name == name]


def is_event(name: str, state: JobState | None = None) -> Any:
    return lambda item: (isinstance(item, JobEvent) and item.name == name
                         and (state is None or item.state is state))


@pytest.mark.timeout(180)
@pytest_twisted.ensureDeferred
async def test_edit_restarts_once_a_syntax_error_restarts_nothing_and_a_fix_restarts(
        reactor, tmp_path):
    """
    Watch: saving a worker's module restarts its job once; saving it with a syntax
    error restarts nothing and says why, once, in the log and the events (saved again,
    still broken: not again); fixing it restarts the job once.
    """
    src = tmp_path / "src"
    src.mkdir()
    source = src / f"{MODULE}.py"
    source.write_text(SOURCE.format(version="version 1"))
    seen = Seen()
    globalLogPublisher.addObserver(seen.log)
    try:
        async with watching_daemon(reactor, tmp_path, src) as top:
            from turberfield_twisted.daemon.initiator import Initiator

            initiator = next(s for s in top if isinstance(s, Initiator))
            watcher = next(s for s in top if isinstance(s, Watcher))
            assert await watcher.watching.addTimeout(30, reactor) == [str(src)]
            initiator.subscribe(seen.event)
            guid = await initiator.launch(MODULE, guid="dev")
            await initiator.ready(guid, 30)
            first_pid = initiator.job(guid).pid

            ready = seen.next(is_event("ready", JobState.READY))
            save(source, SOURCE.format(version="version 2"))
            await ready.addTimeout(60, reactor)
            assert initiator.job(guid).tail.last(10).count("version 2") == 1
            second_pid = initiator.job(guid).pid
            assert second_pid != first_pid

            failed = seen.next(is_event(EVENT_FAILED))
            save(source, SOURCE.format(version="version 3") + "\ndef broken(:\n")
            event = await failed.addTimeout(60, reactor)
            assert "SyntaxError" in event.data["error"], event.data
            assert any("does not import cleanly; nothing restarted" in line
                       and "SyntaxError" in line for line in seen.logged), seen.logged
            still = seen.next(lambda line: isinstance(line, str) and "still does not" in line)
            save(source, SOURCE.format(version="version 3b") + "\ndef broken(:\n")
            await still.addTimeout(60, reactor)  # checked, and not shown again
            assert initiator.job(guid).pid == second_pid  # nothing restarted

            ready = seen.next(is_event("ready", JobState.READY))
            save(source, SOURCE.format(version="version 4"))
            await ready.addTimeout(60, reactor)
            assert "version 4" in initiator.job(guid).tail.last(10)
            assert len(seen.named(EVENT_RESTART)) == 2
            assert len(seen.named(EVENT_FAILED)) == 1
            starts = [e for e in seen.events if e.kind is EventKind.STATE
                      and e.state is JobState.STARTING]
            assert len(starts) == 3  # the launch, the edit's restart, the fix's: nothing more
    finally:
        globalLogPublisher.removeObserver(seen.log)


@pytest.mark.timeout(180)
@pytest_twisted.ensureDeferred
async def test_an_edit_rolls_a_service_out_one_instance_at_a_time(reactor, tmp_path):
    """
    Watch: a service of the edited module is rolled out (new instances started and ready
    before old ones stop), not restarted all at once.
    """
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.services.model import ServiceSpec

    src = tmp_path / "src"
    src.mkdir()
    source = src / f"{MODULE}.py"
    source.write_text(SOURCE.format(version="version 1"))
    seen = Seen()
    with free_ports(1) as address:
        async with watching_daemon(reactor, tmp_path, src) as top:
            initiator = next(s for s in top if isinstance(s, Initiator))
            watcher = next(s for s in top if isinstance(s, Watcher))
            await watcher.watching.addTimeout(30, reactor)
            initiator.subscribe(seen.event)
            ready = [seen.next(lambda e, n=n: isinstance(e, JobEvent) and e.guid == f"dev.{n}"
                               and e.state is JobState.READY) for n in (1, 2)]
            group = initiator.services.create(ServiceSpec(
                name="dev", module=MODULE, host="127.0.0.1", port=address.low, instances=2))
            for d in ready:
                await d.addTimeout(60, reactor)
            done = seen.next(lambda e: isinstance(e, JobEvent) and e.kind is EventKind.SERVICE
                             and e.name in ("rollout_done", "rollout_failed"))
            save(source, SOURCE.format(version="version 2"))
            assert (await done.addTimeout(120, reactor)).name == "rollout_done"
            assert sorted(group.members) == ["dev.3", "dev.4"]
            order = [(e.guid, e.state) for e in seen.events if e.kind is EventKind.STATE
                     and e.state in (JobState.READY, JobState.STOPPING)
                     and e.guid in ("dev.1", "dev.2", "dev.3", "dev.4")]
            first_stop = order.index(next(o for o in order if o[1] is JobState.STOPPING))
            assert ("dev.3", JobState.READY) in order[:first_stop]  # a new one first
            assert seen.named(EVENT_RESTART) == []  # instances are not restarted one by one
