"""
Warm launch end to end: a real template process, real forked workers, real
HTTP on loopback ports from the kit's free_ports.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import textwrap
import weakref
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher

from turberfield_twisted import Initiator, JobState
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.daemon.keeper import forget_ended
from turberfield_twisted.daemon.reconcile import Reconciler
from turberfield_twisted.launch.warm.states import TemplateState
from turberfield_twisted.testing.procs import children_of, kill_left, pid_alive, wait_gone

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
async def warm(reactor: Any, take_ports: Any) -> Any:
    """A started Initiator whose demo module is warm; everything it started is gone after."""
    ports = take_ports(100)
    init = Initiator(None, guid="init", cfg=warm_config(ports.low, ports.high), reactor=reactor)
    init.startService()
    yield init
    await _stop(init)


async def _stop(init: Initiator) -> None:
    """
    Stop ``init``; wait until its workers and templates are gone, and nothing else is left.
    If the stop or the wait fails, its workers and templates are killed (by pid) first.
    """
    pids = [job.pid for job in init.workers.values() if job.pid]
    templates = [t.pid for t in init.launcher.launcher_of(DEMO).every_template() if t.pid]
    try:
        await init.stopService()
        await wait_gone(init.reactor, [*pids, *templates])
    except BaseException:
        await kill_left(init.reactor, [*pids, *templates])
        raise
    assert children_of(os.getpid()) == []


async def ready_template(init: Initiator, module: str = DEMO) -> Any:
    template = init.launcher.launcher_of(module).template(module)
    assert await template.settled().addTimeout(30, init.reactor) is TemplateState.READY
    return template


def logged(reactor: Any, log_format: str, timeout: float) -> Deferred[dict[str, Any]]:
    """Fire with the next event logged with ``log_format`` (of the demo module)."""

    def observe(event: dict[str, Any]) -> None:
        if (not d.called and event.get("log_format") == log_format
                and event.get("module") == DEMO):
            globalLogPublisher.removeObserver(observe)
            d.callback(event)

    d: Deferred[dict[str, Any]] = Deferred(lambda _: globalLogPublisher.removeObserver(observe))
    globalLogPublisher.addObserver(observe)
    return d.addTimeout(timeout, reactor)


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
async def test_a_warm_worker_has_its_lifeline_on_fd_3_and_says_ready_on_fd_4(warm, reactor):
    """
    The template's own reactor fds are closed before the worker's take 0 to
    4 (closed after, they were the lifeline and ready fd): the worker's fd
    3 is the lifeline pipe whose other end this daemon holds, and it said
    it listens by a line on fd 4, not because the health probe found it.
    """
    await ready_template(warm)
    guid = await warm.launch(DEMO)
    job = await warm.ready(guid, timeout=15)
    assert job.process.listening().called
    lifeline = os.readlink(f"/proc/{job.pid}/fd/3")
    assert lifeline.startswith("pipe:")
    ours = [fd for fd in os.listdir("/proc/self/fd") if _link(f"/proc/self/fd/{fd}") == lifeline]
    assert ours, f"no fd of the daemon's is the other end of the worker's {lifeline}"
    assert (await warm.stop(guid)).code == 0


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # the fd listing /proc/self/fd itself is gone
        return None


@pytest_twisted.ensureDeferred
async def test_an_ended_warm_worker_is_freed_with_its_job(warm, reactor):
    """
    Once its exit is reported, a warm worker's process lets go of its ready
    pipe and of its protocol's hold on it: forgotten, the job and its
    process are freed at once, by reference counting, not left in cycles
    for the garbage collector's next full pass.
    """
    await ready_template(warm)
    guid = await warm.launch(DEMO)
    job = await warm.ready(guid, timeout=15)
    held_job, held_process = weakref.ref(job), weakref.ref(job.process)
    del job
    try:
        assert (await warm.stop(guid)).code == 0
        await deferLater(reactor, 0, lambda: None)  # out of the exit's callbacks, which hold it
        forget_ended(warm, guid, warm.forget_kept)
        assert (held_job(), held_process()) == (None, None)
    finally:
        gc.enable()


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
    template = warm.launcher.launcher_of(THREADED).template(THREADED)
    assert await template.settled().addTimeout(30, reactor) is TemplateState.REFUSED
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
    ended = template.gone()
    restarted = logged(reactor, "template of {module} ready (pid {pid})", 30)
    os.kill(template.pid, signal.SIGKILL)
    await ended.addTimeout(15, reactor)
    assert template.state is TemplateState.DEAD
    assert pid_alive(worker) and job.state is JobState.READY
    assert (await get(reactor, job.url("/")))[0] == 200
    await warm.stop(guid)  # SIGTERM; seen to end through its pidfd
    assert job.state is JobState.EXITED
    assert (await restarted)["pid"] != template.pid
    again = warm.launcher.launcher_of(DEMO).templates[DEMO]
    assert again is not template
    assert await again.settled().addTimeout(30, reactor) is TemplateState.READY


@pytest_twisted.ensureDeferred
async def test_reload_retires_the_template_and_its_workers_stay_reported(warm, reactor):
    """reload(module): a new template; the old one forks no more, reports its worker, exits."""
    old = await ready_template(warm)
    guid = await warm.launch(DEMO)
    await warm.ready(guid, timeout=15)
    warm.launcher.launcher_of(DEMO).reload([DEMO])
    new = await ready_template(warm)
    assert new is not old and new.pid != old.pid and old.state is TemplateState.RETIRED
    other = await warm.launch(DEMO)
    other_job = await warm.ready(other, timeout=15)
    parent = int(_proc(other_job.pid, "stat").rsplit(b")", 1)[1].split()[1])
    assert parent == new.pid
    old_gone = old.gone()
    assert (await warm.stop(guid)).code == 0  # reported by the retired template
    await old_gone.addTimeout(15, reactor)  # and then it exits
    await wait_gone(reactor, [old.pid])
    await warm.stop(other)


#: A warm module whose answer comes from a module it imports (so the template holds it).
PROBE = """
import tf_warm_answer
from turberfield_twisted.worker import Klein, run_worker


class Probe:
    app = Klein()

    def __init__(self, ctx):
        self.ctx = ctx

    @app.route("/")
    def answer(self, request):
        return tf_warm_answer.ANSWER


if __name__ == "__main__":
    run_worker(Probe)
"""


@pytest_twisted.ensureDeferred
async def test_a_config_reload_restarts_the_templates_with_the_code_as_it_is_now(reactor, tmp_path,
                                                                                   take_ports):
    """
    The code a warm module imports changes; the config is reloaded: a new
    template imports it afresh and a new job forked from it answers with
    the new code; the old job runs on with the old code, forked by the
    retired template, which reports its end and then exits.
    """
    (tmp_path / "tf_warm_probe.py").write_text(PROBE)
    (tmp_path / "tf_warm_answer.py").write_text('ANSWER = "before"\n')
    ports = take_ports(10)
    text = textwrap.dedent(f"""
        [init]
        listen_addr = 127.0.0.1
        listen_port = 0
        child_port_min = {ports.low}
        child_port_max = {ports.high}
        ready_timeout = 15
        stop_timeout = 5
        pythonpath = {tmp_path}

        [tf_warm_probe]
        warm = true
        """)
    init = Initiator(None, guid="init", cfg=parse_config(text), reactor=reactor)
    reconciler = Reconciler(init, lambda: parse_config(text))
    init.startService()
    try:
        old = await ready_template(init, "tf_warm_probe")
        first = await init.launch("tf_warm_probe")
        first_job = await init.ready(first, timeout=15)
        assert await get(reactor, first_job.url("/")) == (200, b"before")
        (tmp_path / "tf_warm_answer.py").write_text('ANSWER = "after the reload"\n')
        reconciler.reload()
        new = await ready_template(init, "tf_warm_probe")
        assert new is not old and new.pid != old.pid and old.state is TemplateState.RETIRED
        second = await init.launch("tf_warm_probe")
        second_job = await init.ready(second, timeout=15)
        assert int(_proc(second_job.pid, "stat").rsplit(b")", 1)[1].split()[1]) == new.pid
        assert await get(reactor, second_job.url("/")) == (200, b"after the reload")
        assert await get(reactor, first_job.url("/")) == (200, b"before")
        old_gone = old.gone()
        assert (await init.stop(first)).code == 0  # reported by the retired template
        await old_gone.addTimeout(15, reactor)  # which then exits
        assert (await init.stop(second)).code == 0
    finally:
        await _stop(init)


@pytest.mark.parametrize("flag", ["yes", "True", "0", "off"])
def test_warm_reads_configparser_booleans(flag):
    from turberfield_twisted.config.settings import check_config

    cfg = parse_config(f"[init]\n[{DEMO}]\nwarm = {flag}\n")
    assert check_config(cfg, "init").module(DEMO).warm is (flag in ("yes", "True"))


def test_spawns_are_cold_while_the_template_is_not_ready_or_cannot_start():
    """No ready template: a warm module's workers start cold; a template that can't be
    spawned is logged, and its module's workers start cold too."""
    from twisted.logger import capturedLogs

    from turberfield_twisted.launch.local import LocalLauncher, LocalProcess
    from turberfield_twisted.launch.warm.launcher import WarmLauncher
    from turberfield_twisted.testing.fakes import FakeProcessReactor

    reactor = FakeProcessReactor()
    cold = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
    launcher = WarmLauncher(reactor, cold, lambda module: True)
    process = launcher.spawn(DEMO, "g1", 25140, b"[g1]\n", lambda *_: None)
    assert isinstance(process, LocalProcess)
    assert launcher.templates[DEMO].state is TemplateState.STARTING
    assert [p.args[2:4] for p in reactor.spawned] == [
        ["-m", "turberfield_twisted.launch.warm.template"], ["-m", DEMO]]

    spawn = reactor.spawnProcess

    def no_templates(protocol: Any, executable: Any, args: Any = (), **kwargs: Any) -> Any:
        if "turberfield_twisted.launch.warm.template" in args:
            raise OSError("no such file")
        return spawn(protocol, executable, args, **kwargs)

    reactor.spawnProcess = no_templates  # type: ignore[method-assign]
    launcher = WarmLauncher(reactor, cold, lambda module: True)
    with capturedLogs() as events:
        process = launcher.spawn(DEMO, "g2", 25141, b"[g2]\n", lambda *_: None)
    assert isinstance(process, LocalProcess) and launcher.templates == {}
    assert any("could not be started" in event["log_format"] for event in events)


def test_a_reload_retires_a_starting_template_for_good_and_starts_a_new_one():
    """
    reload while a template starts: it is retired (and waited for at close);
    its late "ready" leaves it retired and says nothing; a new template starts.
    """
    from twisted.logger import capturedLogs

    from turberfield_twisted.launch.local import LocalLauncher
    from turberfield_twisted.launch.warm.launcher import WarmLauncher
    from turberfield_twisted.testing.fakes import FakeProcessReactor

    reactor = FakeProcessReactor()
    cold = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
    launcher = WarmLauncher(reactor, cold, lambda module: module == DEMO)
    launcher.prepare([DEMO, THREADED])
    old = launcher.templates[DEMO]
    launcher.reload([DEMO, THREADED])
    new = launcher.templates[DEMO]
    assert new is not old and list(launcher.templates) == [DEMO]
    assert old.state is TemplateState.RETIRED and launcher.every_template() == [new, old]
    with capturedLogs() as events:
        old._heard({"ready": 4242})
    assert (old.state, old.pid, events) == (TemplateState.RETIRED, 4242, [])
    assert new.state is TemplateState.STARTING


#: A warm worker whose output outlives it: its grandchild, which holds its
#: stdout, writes the last line once the worker has exited (the end of a pipe
#: only the worker held).
LAST_WORDS = """\
import os

if __name__ == "__main__":
    print(f"worker {os.getpid()} going", flush=True)
    gone, held = os.pipe()
    if os.fork() == 0:
        os.close(held)
        os.read(gone, 1)
        print(f"grandchild {os.getpid()}: last words", flush=True)
        os._exit(0)
    os.close(gone)
    raise SystemExit(3)
"""


@pytest_twisted.ensureDeferred
async def test_a_warm_workers_last_output_is_read_before_its_exit_is_reported(reactor, tmp_path,
                                                                                take_ports):
    """
    As for a cold worker, the exit of a warm one is reported once its stdout
    and stderr have closed (within OUTPUT_GRACE): the last line its group
    writes is in the job's output when the job is seen to end.
    """
    code = tmp_path / "code"
    code.mkdir()
    (code / "lastwords.py").write_text(LAST_WORDS)
    ports = take_ports(10)
    cfg = parse_config(textwrap.dedent(f"""
        [init]
        listen_addr = 127.0.0.1
        listen_port = 0
        child_port_min = {ports.low}
        child_port_max = {ports.high}
        ready_timeout = 15
        stop_timeout = 5
        pythonpath = {code}

        [lastwords]
        warm = true
        restart = never
        """))
    init = Initiator(None, guid="init", cfg=cfg, reactor=reactor)
    init.startService()
    try:  # stopped however this goes: its template is not left to the tests after
        template = await ready_template(init, "lastwords")
        at_end: list[list[str]] = []
        init.subscribe(lambda event: at_end.append(
            [line["line"] for line in init.job(event.guid).tail.lines()])
            if event.state is JobState.FAILED else None)
        guid = await init.launch("lastwords")
        job = init.job(guid)
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
