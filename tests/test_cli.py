"""
The ``proactor`` command line: parsing and formatting in this process; the
commands as real ``proactor`` processes against a ControlAPI that this test
process serves on 127.0.0.1, with real demo workers behind it.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol

from turberfield_twisted import Initiator, __version__
from turberfield_twisted.cli.commands import COMMANDS, CliError
from turberfield_twisted.cli.format import format_job, format_table
from turberfield_twisted.cli.main import build_parser, main
from turberfield_twisted.contract import API_FILE, TOKEN_FILE
from turberfield_twisted.daemon.statedir import write_private
from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.launch.protocol import ExitStatus
from turberfield_twisted.testing.configs import initiator_config
from turberfield_twisted.testing.procs import children_of, wait_gone

DEMO = "turberfield_twisted.demo.hello"
TOKEN = "admin-token-for-cli-tests"
PROACTOR = str(Path(sys.executable).parent / "proactor")

# -- in this process ------------------------------------------------------------


def test_table_is_aligned_and_shows_none_as_a_dash():
    """Columns line up on the widest cell; None and empty show as '-'."""
    table = format_table(["GUID", "PORT", "PID"], [["abc", 8080, None], ["a", "", 12]])
    assert table.splitlines() == [
        "GUID  PORT  PID",
        "abc   8080  -",
        "a     -     12",
    ]


def test_job_shows_every_field_and_config_key():
    """show: one aligned line a field, config keys as config.KEY, no config dict."""
    text = format_job({"guid": "g1", "state": "ready", "pid": None, "started": None,
                       "config": {"greeting": "hej"}})
    assert text.splitlines() == [
        "guid             g1",
        "state            ready",
        "pid              -",
        "started          -",
        "config.greeting  hej",
    ]


def test_parser_reads_commands_and_options():
    """Global options go before the command; --set pairs and send's --json body parse."""
    args = build_parser().parse_args(
        ["--json", "--timeout", "2.5", "launch", DEMO, "--set", "a=1", "--set", "b=x=y"])
    assert (args.command, args.json, args.timeout) == ("launch", True, 2.5)
    assert args.config == [("a", "1"), ("b", "x=y")]
    args = build_parser().parse_args(["send", "g", "POST", "/echo", "--json", '{"n": 1}'])
    assert (args.json, args.body) == (False, {"n": 1})
    args = build_parser().parse_args(["hooks", "add", "http://127.0.0.1:9/", "ready", "exited"])
    assert (args.action, args.hook_url, args.events) == ("add", "http://127.0.0.1:9/",
                                                         ["ready", "exited"])


@pytest.mark.parametrize("argv", [
    [], ["launch"], ["launch", DEMO, "--set", "novalue"], ["send", "g", "GET"],
    ["send", "g", "POST", "/x", "--json", "{"], ["logs", "g", "--lines", "0"],
    ["--timeout", "-1", "ls"], ["hooks"], ["frobnicate"],
])
def test_usage_errors_are_one_line_and_exit_2(argv, capsys):
    """Bad usage: exit 2, nothing on stdout, one line on stderr."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("proactor: error: ")


class _Listing:
    """A ControlClient's job calls, counting how often the job list is fetched."""

    def __init__(self, *jobs: tuple[str, str]):
        self.jobs_seen = [{"guid": guid, "module": DEMO, "state": state} for guid, state in jobs]
        self.listed = 0
        self.done: list[tuple[str, str]] = []

    async def jobs(self) -> list[dict[str, Any]]:
        self.listed += 1
        return [dict(job) for job in self.jobs_seen]

    async def job(self, guid: str) -> dict[str, Any]:
        raise AssertionError("the list has it already")

    async def stop(self, guid: str) -> dict[str, Any]:
        self.done.append(("stop", guid))
        return {"guid": guid, "state": "stopping"}

    async def restart(self, guid: str) -> dict[str, Any]:
        self.done.append(("restart", guid))
        return {"guid": guid, "state": "starting"}


def _run(command: str, client: _Listing, *argv: str) -> Any:
    """Run ``command``'s coroutine against ``client`` (it never waits on anything)."""
    args = build_parser().parse_args([command, *argv])
    coroutine = COMMANDS[command](client, args)
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    return done.value.value


def test_guid_prefixes_are_resolved_against_one_listing():
    """stop, restart and show fetch the job list once, however many prefixes they name."""
    client = _Listing(("abc-1", "ready"), ("abd-2", "ready"), ("xyz-1", "exited"))
    assert _run("stop", client, "abc", "abd", "xyz") == (
        "abc-1 stopping\nabd-2 stopping\nxyz-1 stopping")
    assert _run("restart", client, "xy", "abc-1") == "xyz-1 starting\nabc-1 starting"
    assert _run("show", client, "abd").splitlines()[0] == "guid    abd-2"
    assert client.listed == 3
    assert client.done == [("stop", "abc-1"), ("stop", "abd-2"), ("stop", "xyz-1"),
                           ("restart", "xyz-1"), ("restart", "abc-1")]
    assert _run("restart", client, "--all") == "abc-1 starting\nabd-2 starting"
    assert _run("stop", _Listing(("xyz-1", "failed")), "--all") == "no job to stop"
    assert _run("restart", _Listing(("xyz-1", "failed")), "--all") == "no job to restart"


@pytest.mark.parametrize("command", ["stop", "restart"])
def test_stop_and_restart_name_their_jobs(command):
    """With no guid, --all nor --module, stop and restart alike say what to give."""
    with pytest.raises(CliError, match="name the jobs, or give --all or --module MODULE"):
        _run(command, _Listing(("abc-1", "ready")))
    with pytest.raises(CliError, match="not both"):
        _run(command, _Listing(("abc-1", "ready")), "abc", "--all")


def test_no_state_dir_is_one_line_and_exit_1(tmp_path, capsys):
    """No daemon state to read: exit 1, one line saying where it looked."""
    assert main(["--state-dir", str(tmp_path / "none"), "ls"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert str(tmp_path / "none" / API_FILE) in err
    assert err.endswith(" (is the daemon running? start one with: twistd -n proactor (make run,"
                        " in a clone), or see --state-dir, --url, --token-file)\n")


def test_an_empty_token_file_or_a_bad_url_is_one_line_and_exit_1(tmp_path, capsys):
    """An empty token file, or a --url that is not http(s): exit 1, one line saying so."""
    (tmp_path / "token").write_text("\n")
    argv = ["--url", "http://127.0.0.1:9", "--token-file", str(tmp_path / "token"), "ls"]
    assert main(argv) == 1
    assert capsys.readouterr().err == (f"proactor: error: {tmp_path}/token holds no"
                                       " the admin token\n")
    assert main(["--url", "ftp://h", "ls"]) == 1
    assert capsys.readouterr().err == ("proactor: error: the API address must start with"
                                       " http:// or https://, not 'ftp://h'\n")


def test_help_exits_0(capsys):
    """--help prints the commands and exits 0."""
    assert main(["--help"]) == 0
    assert "launch" in capsys.readouterr().out


# -- as processes, against a served API ----------------------------------------------


@pytest_twisted.async_yield_fixture
async def daemon(reactor, tmp_path, take_ports):
    """
    An Initiator and its ControlAPI on 127.0.0.1 in this process, on ports from
    free_ports; the state directory (``tmp_path / "state"``) says where and holds
    the admin token.
    """
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from turberfield_twisted.http.api import ControlAPI

    slow = "[turberfield_twisted.testing.slow]\nready_delay = 3\n"
    ports = take_ports(50)
    init = Initiator(None, guid="init", cfg=initiator_config(ports.low, ports.high, extra=slow),
                     reactor=reactor)
    hooks = HookDispatcher(reactor, init.http)
    port = await TCP4ServerEndpoint(reactor, take_ports(1).low, interface="127.0.0.1").listen(
        ControlAPI(init, TOKEN, reactor, hooks=hooks).site())
    init.listening("127.0.0.1", port.getHost().port)
    state = tmp_path / "state"
    write_private(state / API_FILE, f"http://127.0.0.1:{init.api_address[1]}\n")
    write_private(state / TOKEN_FILE, TOKEN + "\n")
    init.startService()
    try:
        yield init, state
    finally:
        pids = [job.pid for job in init.workers.values() if job.pid]
        await init.stopService()
        await wait_gone(reactor, pids)
        await port.stopListening()
        await hooks.close()
        assert children_of(os.getpid()) == []


class _Run(ProcessProtocol):
    def __init__(self):
        self.out, self.err = [], []
        self.ended: Deferred = Deferred()

    def childDataReceived(self, fd, data):
        (self.out if fd == 1 else self.err).append(data)

    def processEnded(self, reason):
        self.ended.callback(ExitStatus.from_reason(reason))


async def proactor(reactor, *argv, timeout=20.0):
    """Run ``proactor ARGV``; its exit code, stdout and stderr (killed after ``timeout``)."""
    run = _Run()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": "/nonexistent"}
    transport = reactor.spawnProcess(run, PROACTOR, [PROACTOR, *argv], env=env)
    killer = reactor.callLater(timeout, transport.signalProcess, "KILL")
    status = await run.ended
    assert killer.active(), f"proactor {argv} did not end within {timeout}s"
    killer.cancel()
    return status.code, b"".join(run.out).decode(), b"".join(run.err).decode()


@pytest_twisted.ensureDeferred
async def test_launch_ls_show_send_logs_stop(daemon, reactor):
    """The job commands, as a user runs them: each exits 0 and prints what it did."""
    init, state = daemon
    at = ["--state-dir", str(state)]
    code, out, err = await proactor(reactor, *at, "launch", DEMO, "--session", "s-1",
                                    "--set", "greeting=hej")
    assert (code, err) == (0, "")
    guid = out.strip()
    job = await init.ready(guid, timeout=15)

    code, out, _ = await proactor(reactor, *at, "ls")
    header, row = out.splitlines()
    assert header.split() == ["GUID", "MODULE", "STATE", "UPTIME", "RESTARTS", "RSS", "CPU",
                              "PID", "PORT"]
    cells = row.split()
    assert cells[:3] == [guid[:12], DEMO, "ready"] and cells[4] == "0"
    assert cells[3].endswith("s") and cells[5].endswith("M") and cells[6].endswith("s")
    assert cells[7:] == [str(job.pid), str(job.port)]
    assert code == 0

    code, out, _ = await proactor(reactor, *at, "show", guid[:6])  # a unique beginning
    assert code == 0
    assert "config.greeting  hej" in out and f"guid             {guid}" in out
    shown = dict(line.split(None, 1) for line in out.splitlines())
    assert shown["rss"].endswith("M") and shown["uptime"].endswith("s"), out  # as ls shows them
    assert shown["cpu"].endswith("s") and shown["rss"] == cells[5]

    code, out, _ = await proactor(reactor, *at, "send", guid, "POST", "/echo", "--json",
                                  '{"n": [1, 2]}')
    assert code == 0 and json.loads(out) == {"guid": guid, "echo": {"n": [1, 2]}}

    code, out, _ = await proactor(reactor, *at, "--json", "logs", guid, "--lines", "5")
    assert code == 0
    assert any("listening" in e["line"] for e in json.loads(out)["lines"])

    code, out, _ = await proactor(reactor, *at, "stop", guid)
    assert (code, out) == (0, f"{guid} stopping\n")
    await init.wait_for_state(guid, ["exited"], 10)
    code, out, _ = await proactor(reactor, *at, "--json", "ls", "--all")
    assert code == 0 and [j["state"] for j in json.loads(out)["jobs"]] == ["exited"]


@pytest_twisted.ensureDeferred
async def test_hooks_add_ls_rm(daemon, reactor):
    """hooks add prints the hook (and its secret, once); ls lists it; rm drops it."""
    _, state = daemon
    at = ["--state-dir", str(state)]
    code, out, _ = await proactor(reactor, *at, "--json", "hooks", "add",
                                  "http://127.0.0.1:9/hook", "ready", "worker:notified")
    assert code == 0
    hook = json.loads(out)
    assert hook["events"] == ["ready", "worker:notified"] and hook["secret"]
    code, out, _ = await proactor(reactor, *at, "hooks", "ls")
    assert code == 0
    assert out.splitlines()[1].split() == [hook["id"], "http://127.0.0.1:9/hook",
                                           "ready,worker:notified", "0", "0", "0"]
    code, out, _ = await proactor(reactor, *at, "hooks", "rm", hook["id"])
    assert (code, out) == (0, "")
    code, _, err = await proactor(reactor, *at, "hooks", "rm", hook["id"])
    assert code == 1 and err.count("\n") == 1


@pytest_twisted.ensureDeferred
async def test_failures_are_one_line_on_stderr_and_exit_1(daemon, reactor, tmp_path):
    """A wrong token, an unknown job, a refused launch, a worker's 404: exit 1, one line."""
    init, state = daemon
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    url = f"http://127.0.0.1:{init.api_address[1]}"
    code, out, err = await proactor(reactor, "--url", url, "--token-file", str(wrong), "ls")
    assert (code, out) == (1, "")
    assert err == (f"proactor: error: unauthorized (HTTP 401): the daemon at {url} refused the"
                   f" token in {wrong} (is it this daemon's? see --token-file,"
                   " --state-dir)\n")

    at = ["--state-dir", str(state)]
    guid = await init.launch(DEMO)
    await init.ready(guid, timeout=15)
    errors = [err]
    for argv, message in [
        (["show", "nope"], "no job's guid is or begins with 'nope'"),
        (["launch", "no.such.module"], "(HTTP 404)"),
        (["launch", DEMO, "--set", "token=mine"], "(HTTP 403)"),
        # the worker's own 404 is a page of HTML: one line says what it was
        (["send", guid, "GET", "/no/such/route"],
         "HTTP 404 Not Found (text/html; charset=utf-8, 207 bytes)"),
    ]:
        code, out, err = await proactor(reactor, *at, *argv)
        assert (code, out) == (1, ""), argv
        assert err.startswith("proactor: error: ") and err.endswith(f"{message}\n"), err
        assert err.count("\n") == 1
        errors.append(err)
    assert TOKEN not in "".join(errors)


def test_version(capsys):
    """--version prints the package's version and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"proactor {__version__}\n"


@pytest_twisted.ensureDeferred
async def test_guid_prefixes_several_jobs_and_all_of_a_module(daemon, reactor):
    """
    A unique beginning names a job; an ambiguous one is an error naming the matches;
    stop takes several guids, --module or --all; restart of a running job restarts it.
    """
    init, state = daemon
    at = ["--state-dir", str(state)]
    for guid in ("abc-1", "abc-2", "xyz-1"):
        await init.launch(DEMO, guid=guid)
    for guid in ("abc-1", "abc-2", "xyz-1"):
        await init.ready(guid, timeout=15)
    code, _, err = await proactor(reactor, *at, "show", "abc")
    assert code == 1 and "'abc' begins 2 guids: abc-1, abc-2; give more of it" in err
    old = init.job("xyz-1").pid
    code, out, _ = await proactor(reactor, *at, "restart", "xyz")
    assert (code, out) == (0, "xyz-1 stopping\n")
    job = await init.wait_for_state("xyz-1", ["ready"], 20)
    assert job.pid != old and job.restarts == 0
    code, out, _ = await proactor(reactor, *at, "stop", "abc-1", "abc-2")
    assert (code, out) == (0, "abc-1 stopping\nabc-2 stopping\n")
    code, _, err = await proactor(reactor, *at, "stop")
    assert code == 1 and "--all or --module" in err
    code, out, _ = await proactor(reactor, *at, "stop", "--module", DEMO)
    assert (code, out) == (0, "xyz-1 stopping\n")
    for guid in ("abc-1", "abc-2", "xyz-1"):
        await init.wait_for_state(guid, ["exited"], 15)
    code, out, _ = await proactor(reactor, *at, "stop", "--all")
    assert (code, out) == (0, "no job to stop\n")


@pytest_twisted.ensureDeferred
async def test_send_a_raw_body_and_launch_wait_outlasting_the_daemon(daemon, reactor, tmp_path):
    """
    send --data (text or @file) with --content-type reaches the worker as given; launch
    --wait on a slow job ends with the daemon's answer (still starting), not a client timeout.
    """
    init, state = daemon
    at = ["--state-dir", str(state)]
    guid = await init.launch(DEMO)
    await init.ready(guid, timeout=15)
    body = tmp_path / "body.json"
    body.write_text('{"from": "a file"}')
    for data in ('{"from": "text"}', f"@{body}"):
        code, out, _ = await proactor(reactor, *at, "send", guid, "POST", "/echo", "--data",
                                      data, "--content-type", "application/json")
        assert code == 0 and json.loads(out)["echo"]["from"] in ("text", "a file")
    code, out, err = await proactor(reactor, *at, "--timeout", "1", "launch",
                                    "turberfield_twisted.testing.slow", "--wait")
    assert code == 1 and out == ""
    assert "is starting" in err and "no answer" not in err and "cannot reach" not in err


class _Streaming(ProcessProtocol):
    """A long-running ``proactor``: its stdout lines, and waiters for one that matches."""

    def __init__(self):
        self.lines: list[str] = []
        self.ended: Deferred = Deferred()
        self.watching: Deferred = Deferred()
        self._waiters: list[tuple[Any, Deferred]] = []
        self._buffer = b""

    def errReceived(self, data):
        self.errors = getattr(self, "errors", b"") + data
        if b"watching" in self.errors and not self.watching.called:
            self.watching.callback(None)

    def outReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.lines.append(line.decode())
            for item in list(self._waiters):
                if item[0](self.lines[-1]):
                    self._waiters.remove(item)
                    item[1].callback(self.lines[-1])

    def until(self, match, reactor, timeout=20.0) -> Deferred:
        for line in self.lines:
            if match(line):
                return succeed(line)
        d: Deferred = Deferred()
        self._waiters.append((match, d))
        return d.addTimeout(timeout, reactor)

    def processEnded(self, reason):
        self.ended.callback(ExitStatus.from_reason(reason))


def streaming(reactor, *argv) -> tuple[_Streaming, Any]:
    run = _Streaming()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": "/nonexistent"}
    return run, reactor.spawnProcess(run, PROACTOR, [PROACTOR, *argv], env=env)


@pytest_twisted.ensureDeferred
async def test_logs_follow_and_watch_show_what_happens_as_it_happens(daemon, reactor):
    """
    logs -f prints the job's recent lines, then a line as soon as the worker prints it;
    watch shows a kill -9 and the restart. Both end at SIGINT, exit 0.
    """
    init, state = daemon
    at = ["--state-dir", str(state)]
    guid = await init.launch(DEMO)
    job = await init.ready(guid, timeout=15)
    follow, follower = streaming(reactor, *at, "logs", "-f", guid[:8])
    watch, watcher = streaming(reactor, *at, "watch")
    try:
        await watch.watching.addTimeout(20, reactor)
        await follow.until(lambda line: "listening on" in line, reactor)
        said = reactor.seconds()
        code, _, _ = await _relay(reactor, init, guid, "/say", b"a line from the worker")
        assert code == 202
        await follow.until(lambda line: line.endswith("stdout a line from the worker"), reactor)
        latency = reactor.seconds() - said  # reported, not asserted (a shared machine)
        old = job.pid
        os.kill(old, 9)
        await watch.until(lambda line: guid[:12] in line and " backoff " in line, reactor)
        await watch.until(lambda line: guid[:12] in line and " ready " in line
                          and f"pid={old}" not in line, reactor)
    finally:
        for run, transport in ((follow, follower), (watch, watcher)):
            if not run.ended.called:
                transport.signalProcess("INT")
    for run in (follow, watch):
        status = await run.ended.addTimeout(20, reactor)
        assert status.code == 0, run.lines
    assert latency < 20


async def _relay(reactor, init, guid, path, body):
    import treq

    url = f"http://127.0.0.1:{init.api_address[1]}/jobs/{guid}/proxy{path}"
    response = await treq.post(url, data=body, headers={"Authorization": [f"Bearer {TOKEN}"]},
                               timeout=10, reactor=reactor)
    return response.code, None, await response.content()
