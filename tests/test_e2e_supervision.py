"""
Supervision end to end: real worker processes that crash, hang, leave
children behind, flood their output, can't be imported or never start.
Every wait is on an event (a state, a log event, a pidfd), with a bound.
"""

import io
import json
import os
import signal
import socket
import sys
import textwrap
import time
import uuid

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import globalLogPublisher

from turberfield_twisted.launch.ports import next_port, port_in_use
from turberfield_twisted.launch.protocol import MAX_LINE, LineSplitter
from turberfield_twisted.testing import crash, flood, hang
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import group_members, pid_alive, wait_gone

DEMO = "turberfield_twisted.demo.hello"
T = "turberfield_twisted.testing."

#: Small policy values for every module (DEFAULT), and a section per fault module.
FAULTS = f"""
[DEFAULT]
backoff_initial = 0.05
backoff_factor = 2
backoff_cap = 0.2
jitter = 0
max_restarts = 2
restart_window = 60

[{T}crash]
[{T}import_error]
[{T}hang]
[{T}flood]
[{T}spawner]
restart = never
[{T}deaf]
max_restarts = 0
"""


@pytest.fixture
def make_initiator(start_initiator):
    """
    ``await make_initiator(extra="", **own)``: a started Initiator on the
    real reactor with FAULTS and ``extra`` sections, on a hundred child
    ports from free_ports (the kit's ``start_initiator``: after the test
    every job is stopped, no process it started is left, and the ports
    are let go).
    """

    async def make(extra="", **own):
        cfg = initiator_config(extra=FAULTS + textwrap.dedent(extra), **own)
        running = await start_initiator(cfg, ports=free_ports(100))
        return running.init

    return make


def record_states(init, guid):
    """The list of states ``guid`` passes through from now on."""
    seen = []
    init.subscribe(lambda e: e.guid == guid and e.kind == "state" and seen.append(e.name))
    return seen


def logged(reactor, match, timeout):
    """Fire with the first log event for which ``match(event)`` is true."""
    d = Deferred(lambda _: globalLogPublisher.removeObserver(observe))

    def observe(event):
        if not d.called and match(event):
            globalLogPublisher.removeObserver(observe)
            d.callback(event)

    globalLogPublisher.addObserver(observe)
    return d.addTimeout(timeout, reactor)


async def get(reactor, url, **kwargs):
    response = await treq.get(url, timeout=10, reactor=reactor, **kwargs)
    return response.code, await response.content()


# -- restart policy -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_crashing_worker_backs_off_then_fails(make_initiator):
    """Exit 1 at once: backoff and restart max_restarts times, then failed with its reason."""
    init = await make_initiator()
    guid = await init.launch(T + "crash")
    states = record_states(init, guid)
    job = await init.wait_for_state(guid, ["failed"], 30)
    assert states == ["backoff", "waiting", "starting", "backoff", "waiting", "starting",
                      "failed"]
    view = job.as_json()
    assert (view["state"], view["exit_code"], view["restarts"]) == ("failed", 1, 2)
    assert view["last_error"].startswith("gave up after 2 restarts within 60s; last: exit 1")
    assert crash.REASON in view["last_error"]


@pytest_twisted.ensureDeferred
async def test_kill_9_brings_a_ready_worker_back_with_its_guid_and_port(make_initiator, reactor):
    """SIGKILL to a ready demo worker: it restarts, same guid, session and port, and answers."""
    init = await make_initiator()
    guid = await init.launch(DEMO, session="s-9")
    job = await init.ready(guid, timeout=30)
    port, old_pid = job.port, job.pid
    os.kill(old_pid, signal.SIGKILL)
    await init.wait_for_state(guid, ["backoff"], 10)
    assert job.status.signal == signal.SIGKILL and job.last_error.startswith("signal 9")
    await wait_gone(reactor, [old_pid], timeout=10)
    job = await init.ready(guid, timeout=30)
    assert (job.guid, job.port, job.session, job.restarts) == (guid, port, "s-9", 1), (
        job.as_json(), job.tail.last(10))
    assert job.pid != old_pid
    code, body = await get(reactor, f"http://127.0.0.1:{port}/")
    assert code == 200
    assert json.loads(body)["guid"] == guid and json.loads(body)["session"] == "s-9"


# -- stopping and process groups ------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_worker_that_ignores_sigterm_is_killed_after_stop_timeout(make_initiator, reactor):
    """stop: SIGTERM (which it shrugs off), then SIGKILL once stop_timeout has passed."""
    init = await make_initiator(stop_timeout="0.5")
    guid = await init.launch(T + "hang")
    job = await init.ready(guid, timeout=30)
    pid = job.pid
    started = time.monotonic()
    status = await init.stop(guid)
    assert time.monotonic() - started >= 0.5
    assert (status.code, status.signal) == (None, signal.SIGKILL)
    assert job.state == "exited"
    assert hang.IGNORED in job.tail.last(5, stream="stdout")
    await wait_gone(reactor, [pid], timeout=5)


@pytest.mark.parametrize("how", ["stop", "kill -9 of the worker alone"])
@pytest_twisted.ensureDeferred
async def test_grandchild_dies_with_its_worker(make_initiator, reactor, how):
    """A process the worker started is in its group, and goes when the worker goes."""
    init = await make_initiator()
    guid = await init.launch(T + "spawner")
    job = await init.ready(guid, timeout=30)
    pid = job.pid
    code, body = await get(reactor, f"http://127.0.0.1:{job.port}/child")
    grandchild = json.loads(body)["pid"]
    try:
        assert code == 200 and pid_alive(grandchild)
        assert os.getpgid(grandchild) == pid and grandchild in group_members(pid)
        if how == "stop":
            await init.stop(guid)
            assert job.state == "exited"
        else:
            os.kill(pid, signal.SIGKILL)
            await init.wait_for_state(guid, ["failed"], 10)  # restart = never
        await wait_gone(reactor, [pid, grandchild], timeout=10)
    finally:
        if pid_alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


# -- ports ----------------------------------------------------------------------


def holder_socket():
    """A listening socket to be (SO_REUSEADDR: a TIME_WAIT left by earlier tests is no bar)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


@pytest_twisted.ensureDeferred
async def test_port_held_by_another_socket_is_skipped(make_initiator, reactor):
    """next_port passes over a port that something outside the initiator listens on."""
    init = await make_initiator()
    first = next_port(init.cfg, "init", in_use=lambda port: port_in_use("127.0.0.1", port))
    with holder_socket() as holder:
        holder.bind(("127.0.0.1", first))
        holder.listen()
        guid = await init.launch(DEMO)
        job = await init.ready(guid, timeout=30)
        assert job.port > first and job.restarts == 0
        code, _ = await get(reactor, f"http://127.0.0.1:{job.port}/")
        assert code == 200


@pytest_twisted.ensureDeferred
async def test_port_taken_after_allocation_relaunches_on_the_next(make_initiator, reactor):
    """A port taken between allocation and bind: the worker exits 75, and runs on the next."""
    init = await make_initiator()
    taken = []

    def take_the_port(event):
        if event.guid == "racer" and event.name == "starting" and not taken:
            holder.bind(("127.0.0.1", event.port))  # before the worker has even started
            holder.listen()
            taken.append(event.port)

    init.subscribe(take_the_port)
    with holder_socket() as holder:
        states = record_states(init, "racer")
        await init.launch(DEMO, guid="racer")
        job = await init.ready("racer", timeout=30)
        assert len(taken) == 1
        # exit 75: no backoff between, and no restart counted
        assert states == ["waiting", "starting", "waiting", "starting", "ready"]
        assert job.port > taken[0] and job.restarts == 0 and job.busy_ports == set(taken)
        assert any("cannot listen" in line for line in job.tail.last(20, stream="stderr"))
        code, _ = await get(reactor, f"http://127.0.0.1:{job.port}/")
        assert code == 200


# -- output ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_flooding_worker_leaves_the_initiator_serving(make_initiator, reactor):
    """A 1 MiB line and raw bytes: logged in 64 KiB pieces as valid text; others still answer."""
    init = await make_initiator()
    demo = await init.ready(await init.launch(DEMO), timeout=30)
    pieces = []

    def count(event):
        if event.get("guid") == "flood" and set(event.get("line") or "?") == {"x"}:
            pieces.append(len(event["line"]))
        return event.get("guid") == "flood" and event.get("line") == flood.DONE

    done = logged(reactor, count, timeout=30)
    await init.launch(T + "flood", guid="flood")
    await done
    job = await init.ready("flood", timeout=30)
    assert pieces == [MAX_LINE] * 16
    code, body = await get(reactor, f"http://127.0.0.1:{demo.port}/")
    assert code == 200 and json.loads(body)["guid"] == demo.guid
    lines = [record["line"] for record in job.tail.lines("stdout")]
    assert lines[-3:] == ["x" * MAX_LINE, flood.RAW.decode("utf-8", errors="replace"), flood.DONE]
    assert "\ufffd" in lines[-2]
    for line in lines:
        assert isinstance(line, str) and len(line.encode("utf-8")) <= MAX_LINE * 3
        assert len(line) <= MAX_LINE
    response = await treq.post(f"http://127.0.0.1:{job.port}/flood", timeout=10, reactor=reactor)
    assert response.code == 200 and await response.content() == b"flooded"
    assert job.state == "ready"


# -- startup faults ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_module_that_raises_on_import_fails_with_its_traceback(make_initiator, reactor):
    """An import-time exception: failed, quickly, with the exception's line in last_error;
    a job launched alongside it is unaffected."""
    init = await make_initiator()
    started = time.monotonic()
    guid = await init.launch(T + "import_error")
    other = await init.launch(DEMO)
    job = await init.wait_for_state(guid, ["failed"], 30)
    assert time.monotonic() - started < 15
    # (the module itself can't be imported here to read its REASON)
    assert "RuntimeError: import_error: this module refuses to be imported" in job.last_error
    assert job.status.code == 1 and job.restarts == 2
    demo = await init.ready(other, timeout=30)
    code, body = await get(reactor, f"http://127.0.0.1:{demo.port}/")
    assert code == 200 and json.loads(body)["guid"] == other


@pytest_twisted.ensureDeferred
async def test_module_gone_by_its_restart_fails_with_the_reason(make_initiator, tmp_path, reactor):
    """A module deleted while its job runs: the restart can't find it, and the job fails."""
    name = f"vanishing_{uuid.uuid4().hex[:8]}"
    source = tmp_path / f"{name}.py"
    source.write_text(textwrap.dedent("""
        from turberfield_twisted.worker import Klein, run_worker

        app = Klein()

        @app.route("/")
        def here(request):
            return b"here"

        if __name__ == "__main__":
            run_worker(app)
        """))
    init = await make_initiator(extra=f"[{name}]\nmax_restarts = 1\n", pythonpath=str(tmp_path))
    guid = await init.launch(name)
    job = await init.ready(guid, timeout=30)
    code, body = await get(reactor, f"http://127.0.0.1:{job.port}/")
    assert (code, body) == (200, b"here")
    source.unlink()
    os.kill(job.pid, signal.SIGKILL)
    job = await init.wait_for_state(guid, ["failed"], 30)
    assert f"No module named {name}" in job.last_error
    assert job.restarts == 1 and job.status.code == 1


@pytest_twisted.ensureDeferred
async def test_worker_that_never_reads_its_config_is_killed_at_ready_timeout(make_initiator):
    """A deaf worker: killed at ready_timeout, quickly, and counted a failed start."""
    init = await make_initiator(ready_timeout="1")
    started = time.monotonic()
    guid = await init.launch(T + "deaf")
    job = await init.wait_for_state(guid, ["failed"], 15)
    assert 1 <= time.monotonic() - started < 10
    assert job.last_error == "not ready within 1s"
    assert job.status.signal == signal.SIGKILL


# -- no orphans -------------------------------------------------------------------

INITIATOR = """
import sys
from turberfield_twisted.worker import Klein  # installs the asyncio reactor
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.task import react
from turberfield_twisted import Initiator
from turberfield_twisted.configtext import parse_config

async def main(reactor):
    init = Initiator(None, guid="init", cfg=parse_config(sys.stdin.read()), reactor=reactor)
    init.startService()
    for module in sys.argv[1:]:
        guid = await init.launch(module)
        if not module.endswith("deaf"):
            await init.ready(guid, timeout=30)
        print("pid", init.job(guid).pid, flush=True)
    await Deferred()

react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
"""


class _Initiator(ProcessProtocol):
    """An initiator in a child process: ``pids`` fires with the pids of its ``count`` workers."""

    def __init__(self, config, count):
        self.config = config
        self.count = count
        self.found = []
        self.output = []
        self.errors = []
        self.pids = Deferred()
        self.ended = Deferred()
        self._lines = LineSplitter(self.line)

    def connectionMade(self):
        self.transport.write(self.config.encode())
        self.transport.closeStdin()

    def line(self, text):
        self.output.append(text)
        if text.startswith("pid "):
            self.found.append(int(text.split()[1]))
            if len(self.found) == self.count:
                self.pids.callback(self.found)

    def childDataReceived(self, fd, data):
        if fd == 1:
            self._lines.feed(data)
        else:
            self.errors.append(data)

    def processEnded(self, reason):
        self.ended.callback(reason.value)


@pytest_twisted.ensureDeferred
async def test_workers_exit_when_their_initiator_is_killed(reactor, take_ports):
    """SIGKILL to the initiator: its workers (even one that ignores SIGTERM) see the lifeline
    close and exit; one that never started blocks on the lifeline and ends too."""
    config = io.StringIO()
    ports = take_ports(10)
    initiator_config(ports.low, ports.high, extra=FAULTS, ready_timeout="60").write(config)
    modules = [DEMO, T + "hang", T + "deaf"]
    proto = _Initiator(config.getvalue(), len(modules))
    process = reactor.spawnProcess(proto, sys.executable,
                                   [sys.executable, "-P", "-c", INITIATOR, *modules],
                                   env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"})
    pids = []
    try:
        try:
            pids = await proto.pids.addTimeout(60, reactor)
        except DeferredTimeout:
            pytest.fail(b"".join(proto.errors).decode(errors="replace"))
        assert all(pid_alive(pid) for pid in pids)
        process.signalProcess("KILL")
        await proto.ended.addTimeout(10, reactor)
        await wait_gone(reactor, pids, timeout=10)
    finally:
        for pid in pids:
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        if process.pid is not None:
            process.signalProcess("KILL")
