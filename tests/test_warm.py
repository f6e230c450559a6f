"""
Warm launch end to end: a real template process, real forked workers, real
HTTP on loopback ports 25000-25099.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import Deferred

from turberfield_twisted import Initiator, JobState
from turberfield_twisted.config import parse_config
from turberfield_twisted.testing.procs import children_of, pid_alive, wait_gone

DEMO = "turberfield_twisted.demo.hello"
THREADED = "turberfield_twisted.testing.threaded"


def warm_config(low: int, high: int) -> Any:
    return parse_config(textwrap.dedent(f"""
        [init]
        listen_addr = 127.0.0.1
        listen_port = 0
        child_port_min = {low}
        child_port_max = {high}
        ready_timeout = 15
        stop_timeout = 5

        [{DEMO}]
        greeting = hello
        overridable = greeting
        warm = true
        backoff_initial = 0.05

        [{THREADED}]
        warm = true
        """))


@pytest_twisted.async_yield_fixture
async def warm(reactor: Any) -> Any:
    """A started Initiator whose demo module is warm; everything it started is gone after."""
    init = Initiator(None, guid="init", cfg=warm_config(25000, 25099), reactor=reactor)
    init.startService()
    yield init
    pids = [job.pid for job in init.workers.values() if job.pid]
    templates = [t.pid for t in [*init.launcher.local.templates.values(),
                                 *init.launcher.local._retired] if t.pid]
    await init.stopService()
    await wait_gone(reactor, [*pids, *templates])
    assert children_of(os.getpid()) == []


async def ready_template(init: Initiator, module: str = DEMO) -> Any:
    template = init.launcher.local.template(module)
    assert await template.settled().addTimeout(30, init.reactor) == "ready"
    return template


async def get(reactor: Any, url: str) -> tuple[int, bytes]:
    response = await treq.get(url, timeout=5, reactor=reactor, persistent=False)
    return response.code, await response.content()


def _proc(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return f.read()


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any readable private mapping of ``pid`` holds ``needle`` (root reads it)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


@pytest_twisted.ensureDeferred
async def test_a_warm_worker_is_forked_answers_and_reads_its_own_stdin(warm, reactor):
    """
    Forked from the template (its parent), in a session of its own, ready,
    answering with the config it read on its own stdin; no token in its
    argv or environment, nor anywhere in the template's.
    """
    template = await ready_template(warm)
    guid = await warm.launch(DEMO, session="s-1", config={"greeting": "warm hello"})
    job = await warm.ready(guid, timeout=15)
    assert job.state is JobState.READY and job.pid
    assert os.getsid(job.pid) == job.pid
    stat = _proc(job.pid, "stat").rsplit(b")", 1)[1].split()
    assert int(stat[1]) == template.pid  # its parent is the template
    status, body = await get(reactor, job.url("/"))
    answer = json.loads(body)
    assert status == 200
    assert (answer["guid"], answer["session"]) == (guid, "s-1")
    assert answer["config"]["greeting"] == "warm hello"
    token = job.token.encode()
    for pid in (job.pid, template.pid):
        assert token not in _proc(pid, "cmdline") and token not in _proc(pid, "environ")
    assert not _memory_holds(template.pid, token)
    assert (await warm.stop(guid)).code == 0


@pytest_twisted.ensureDeferred
async def test_kill_9_is_reported_and_the_worker_is_forked_again(warm, reactor):
    """SIGKILL to a warm worker: its signal is reported, it is forked again at once and answers."""
    await ready_template(warm)
    guid = await warm.launch(DEMO)
    job = await warm.ready(guid, timeout=15)
    first = job.pid
    seen: list[Any] = []
    warm.subscribe(lambda event: seen.append(event) if event.guid == guid else None)
    back: Deferred[Any] = warm.wait_for_state(guid, [JobState.BACKOFF], timeout=15)
    os.kill(first, signal.SIGKILL)
    await back
    assert job.last_error.startswith("signal 9")
    job = await warm.ready(guid, timeout=15)
    assert job.pid != first and job.restarts == 1
    assert [e.state.value for e in seen] == ["backoff", "waiting", "starting", "ready"]
    assert (await get(reactor, job.url("/")))[0] == 200
    await wait_gone(reactor, [first])


@pytest_twisted.ensureDeferred
async def test_a_module_that_starts_threads_is_refused_as_warm_and_runs_cold(warm, reactor):
    """The template of a threaded module says why it can't be warm; its workers start cold."""
    template = warm.launcher.local.template(THREADED)
    assert await template.settled().addTimeout(30, reactor) == "refused"
    assert "threads" in template.refusal
    guid = await warm.launch(THREADED)
    job = await warm.ready(guid, timeout=15)
    stat = _proc(job.pid, "stat").rsplit(b")", 1)[1].split()
    parent = int(stat[1])
    assert parent == os.getpid() or int(_proc(parent, "stat").rsplit(b")", 1)[1].split()[1]) \
        == os.getpid()  # spawned by the daemon (through setsid), not forked
    assert (await get(reactor, job.url("/"))) == (200, b"threaded")
    await warm.stop(guid)


@pytest_twisted.ensureDeferred
async def test_a_dead_template_is_restarted_and_its_workers_are_still_seen_to_end(warm, reactor):
    """Template killed: its worker runs on; its end is still seen; a new template comes up."""
    template = await ready_template(warm)
    guid = await warm.launch(DEMO)
    job = await warm.ready(guid, timeout=15)
    worker = job.pid
    ended, restarted = template.gone(), warm.launcher.local.next_template(DEMO)
    os.kill(template.pid, signal.SIGKILL)
    await ended.addTimeout(15, reactor)
    assert template.state == "dead"
    assert pid_alive(worker) and job.state is JobState.READY
    assert (await get(reactor, job.url("/")))[0] == 200
    await warm.stop(guid)  # SIGTERM; seen to end through its pidfd
    assert job.state is JobState.EXITED
    again = await restarted.addTimeout(15, reactor)
    assert again is not template
    assert await again.settled().addTimeout(30, reactor) == "ready"


@pytest_twisted.ensureDeferred
async def test_reload_retires_the_template_and_its_workers_stay_reported(warm, reactor):
    """reload(module): a new template; the old one forks no more, reports its worker, exits."""
    old = await ready_template(warm)
    guid = await warm.launch(DEMO)
    await warm.ready(guid, timeout=15)
    warm.launcher.local.reload(DEMO)
    new = await ready_template(warm)
    assert new is not old and new.pid != old.pid and old.state == "retired"
    other = await warm.launch(DEMO)
    other_job = await warm.ready(other, timeout=15)
    parent = int(_proc(other_job.pid, "stat").rsplit(b")", 1)[1].split()[1])
    assert parent == new.pid
    old_gone = old.gone()
    assert (await warm.stop(guid)).code == 0  # reported by the retired template
    await old_gone.addTimeout(15, reactor)  # and then it exits
    await wait_gone(reactor, [old.pid])
    await warm.stop(other)


@pytest.mark.parametrize("flag", ["yes", "True", "0", "off"])
def test_warm_reads_configparser_booleans(flag):
    from turberfield_twisted.settings import check_config

    cfg = parse_config(f"[init]\n[{DEMO}]\nwarm = {flag}\n")
    assert check_config(cfg, "init").module(DEMO).warm is (flag in ("yes", "True"))


def test_spawns_are_cold_while_the_template_is_not_ready_or_cannot_start():
    """No ready template: a warm module's workers start cold; a template that can't be
    spawned is logged, and its module's workers start cold too."""
    from twisted.logger import capturedLogs

    from turberfield_twisted.launcher import LocalLauncher, LocalProcess
    from turberfield_twisted.testing.fakes import FakeProcessReactor
    from turberfield_twisted.warm import WarmLauncher

    reactor = FakeProcessReactor()
    cold = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
    launcher = WarmLauncher(reactor, cold, lambda module: True)
    process = launcher.spawn(DEMO, "g1", 25140, b"[g1]\n", lambda *_: None)
    assert isinstance(process, LocalProcess)
    assert launcher.templates[DEMO].state == "starting"
    assert [p.args[2:4] for p in reactor.spawned] == [
        ["-m", "turberfield_twisted.forkserver"], ["-m", DEMO]]

    spawn = reactor.spawnProcess

    def no_templates(protocol: Any, executable: Any, args: Any = (), **kwargs: Any) -> Any:
        if "turberfield_twisted.forkserver" in args:
            raise OSError("no such file")
        return spawn(protocol, executable, args, **kwargs)

    reactor.spawnProcess = no_templates  # type: ignore[method-assign]
    launcher = WarmLauncher(reactor, cold, lambda module: True)
    with capturedLogs() as events:
        process = launcher.spawn(DEMO, "g2", 25141, b"[g2]\n", lambda *_: None)
    assert isinstance(process, LocalProcess) and launcher.templates == {}
    assert any("could not be started" in event["log_format"] for event in events)


#: A warm worker whose output outlives it: its grandchild, which holds its
#: stdout, writes the last line a moment after the worker has exited.
LAST_WORDS = """\
import os
import time

if __name__ == "__main__":
    print(f"worker {os.getpid()} going", flush=True)
    if os.fork() == 0:
        time.sleep(0.2)
        print(f"grandchild {os.getpid()}: last words", flush=True)
        os._exit(0)
    raise SystemExit(3)
"""


@pytest_twisted.ensureDeferred
async def test_a_warm_workers_last_output_is_read_before_its_exit_is_reported(reactor, tmp_path):
    """
    As for a cold worker, the exit of a warm one is reported once its stdout
    and stderr have closed (within OUTPUT_GRACE): the last line its group
    writes is in the job's output when the job is seen to end.
    """
    code = tmp_path / "code"
    code.mkdir()
    (code / "lastwords.py").write_text(LAST_WORDS)
    cfg = parse_config(textwrap.dedent(f"""
        [init]
        listen_addr = 127.0.0.1
        listen_port = 0
        child_port_min = 26800
        child_port_max = 26809
        ready_timeout = 15
        stop_timeout = 5
        pythonpath = {code}

        [lastwords]
        warm = true
        restart = never
        """))
    init = Initiator(None, guid="init", cfg=cfg, reactor=reactor)
    init.startService()
    template = await ready_template(init, "lastwords")
    at_end: list[list[str]] = []
    init.subscribe(lambda event: at_end.append(
        [line["line"] for line in init.job(event.guid).tail.lines()])
        if event.state is JobState.FAILED else None)
    guid = await init.launch("lastwords")
    job = init.job(guid)
    try:
        await init.wait_for_state(guid, [JobState.FAILED], timeout=15)
    finally:
        await init.stopService()
    assert job.status.code == 3
    [lines] = at_end
    assert [line.split()[0] for line in lines] == ["worker", "grandchild"]
    assert lines[1].endswith(": last words")
    pids = [int(line.split()[1].rstrip(":")) for line in lines]
    await wait_gone(reactor, [*pids, template.pid])
    assert children_of(os.getpid()) == []
