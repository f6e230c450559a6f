"""``twistd -n proactor`` end to end: a real daemon, real workers, real HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
from typing import Any

import pytest
import pytest_twisted
import treq
from _system import absent
from twisted.internet import defer

from turberfield_twisted.tap import Options
from turberfield_twisted.tap_services import Kept, with_backlog
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone

DEMO = "turberfield_twisted.demo.hello"
TOKENISH = re.compile(rb"[A-Za-z0-9_-]{43}")

@pytest_twisted.async_fixture
async def daemon(daemons: Any) -> Any:
    """A running daemon on a free loopback port (stopped by ``daemons`` after)."""
    return await daemons(size=100)


async def call(reactor: Any, daemon: Daemon, method: str, path: str, body: Any = None,
               token: str | None = None) -> tuple[int, Any]:
    headers = {b"Authorization": [f"Bearer {token or daemon.token}".encode()]}
    kwargs: dict[str, Any] = {}
    if body is not None:
        kwargs["data"] = json.dumps(body).encode()
        headers[b"Content-Type"] = [b"application/json"]
    response = await treq.request(method, daemon.url + path, headers=headers, timeout=30,
                                  reactor=reactor, **kwargs)
    content = await response.content()
    return response.code, json.loads(content) if content else None


def proc_text(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


@pytest_twisted.ensureDeferred
async def test_launch_reach_list_and_stop_a_worker(daemon, reactor, tmp_path):
    """POST /jobs launches, the worker answers, GET /jobs lists it, DELETE stops it."""
    assert daemon.state_dir is not None
    token_file = daemon.state_dir / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    code, job = await call(reactor, daemon, "POST", "/jobs", {"module": DEMO, "session": "s1"})
    assert code == 201, job
    guid = job["guid"]
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=ready&timeout=20")
    assert (code, job["state"]) == (200, "ready"), job
    response = await treq.get(f"http://127.0.0.1:{job['port']}/", timeout=10, reactor=reactor)
    assert json.loads(await response.content())["guid"] == guid
    code, listing = await call(reactor, daemon, "GET", "/jobs")
    assert [j["guid"] for j in listing["jobs"]] == [guid]
    code, _ = await call(reactor, daemon, "DELETE", f"/jobs/{guid}")
    assert code == 202
    await wait_gone(reactor, [job["pid"]], timeout=15)
    code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=exited&timeout=20")
    assert job["state"] == "exited"


@pytest_twisted.ensureDeferred
async def test_sigterm_stops_every_job_and_exits_cleanly(daemons, reactor):
    """SIGTERM with two jobs running: both end, then the daemon exits cleanly."""
    daemon = await daemons(size=100)
    guids = []
    for _ in range(2):
        code, job = await call(reactor, daemon, "POST", "/jobs", {"module": DEMO})
        assert code == 201
        guids.append(job["guid"])
    pids = []
    for guid in guids:
        code, job = await call(reactor, daemon, "GET", f"/jobs/{guid}?wait=ready&timeout=20")
        assert job["state"] == "ready"
        pids.append(job["pid"])
    daemon.signal(signal.SIGTERM)
    status = await daemon.ended.addTimeout(30, reactor)
    assert status.code == 0 or status.signal == signal.SIGTERM, status
    await wait_gone(reactor, pids, timeout=5)
    log = "\n".join(daemon.lines)
    assert all(f"job {g} (turberfield_twisted.demo.hello) exited" in log for g in guids)
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_no_token_in_argv_environ_responses_or_log(daemon, reactor):
    """Tokens live on stdin and in headers only: not in /proc, API output or the log."""
    code, job = await call(reactor, daemon, "POST", "/jobs", {"module": DEMO})
    assert code == 201
    code, job = await call(reactor, daemon, "GET", f"/jobs/{job['guid']}?wait=ready&timeout=20")
    assert job["state"] == "ready"
    bodies = [json.dumps(job)]
    for path in ("/jobs", f"/jobs/{job['guid']}", f"/jobs/{job['guid']}/logs", "/health"):
        bodies.append(json.dumps((await call(reactor, daemon, "GET", path))[1]))
    assert not any(daemon.token in b for b in bodies)
    for pid in (daemon.pid, job["pid"]):
        for name in ("cmdline", "environ"):
            text = proc_text(pid, name)
            assert text, (pid, name)
            assert daemon.token.encode() not in text
            assert not TOKENISH.search(text), (pid, name)
    assert daemon.token not in "\n".join(daemon.lines)


@pytest_twisted.ensureDeferred
async def test_api_listens_on_loopback_only_by_default(daemon, reactor):
    """With no --listen, the API binds 127.0.0.1 (the default config), nothing else."""
    inodes = set()
    for fd in os.listdir(f"/proc/{daemon.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{daemon.pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    listening.append(fields[1].split(":")[0])
    assert listening and set(listening) == {"0100007F"}, listening
    assert daemon.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(("text", "where", "key"), [
    ("admin_token hunter2-secret\n", ", line 3", None),  # not key = value
    ("ready_timeout = hunter2-secret\n", ", line 3", "ready_timeout"),  # a bad value
    ("ready_timout = 5\n", ", line 3", "ready_timout"),  # an unknown key
    (None, ": cannot read it (No such file or directory)", None),  # no such file
], ids=["syntax", "value", "key", "missing"])
@pytest_twisted.ensureDeferred
async def test_bad_config_file_exits_with_file_and_line(reactor, tmp_path, text, where, key):
    """
    A malformed, bad or missing --config stops the daemon at start: one line (file,
    line, key; no value, no usage text), exit 1, nothing written.
    """
    config = tmp_path / "bad.cfg"
    if text is not None:
        config.write_text(f"[proactor]\nlisten_port = 0\n{text}")
    daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path)
    with pytest.raises(RuntimeError):
        await daemon.listening.addTimeout(30, reactor)
    status = await daemon.ended.addTimeout(30, reactor)
    assert status.code == 1, status
    [line] = daemon.lines
    assert line.startswith(f"proactor: bad config: {config}{where}"), line
    assert key is None or f"'{key}'" in line
    assert "hunter2" not in line
    assert not (tmp_path / "state").exists()  # nothing written before the config is known good


BAD_VALUES = [
    ("[proactor]", "ready_timeout = soon-s3cr3t", "ready_timeout"),
    ("[proactor]", "ready_timeout = 0", "ready_timeout"),
    ("[proactor]", "stop_timeout = -1", "stop_timeout"),
    ("[proactor]", "hook_allow = everywhere-s3cr3t", "hook_allow"),
    ("[proactor]", "child_port_min = abc-s3cr3t", "child_port_min"),
    ("[proactor]", "child_port_min = 30000", "child_port_min"),  # above child_port_max
    ("[proactor]", "max_body = -5", "max_body"),
    ("[proactor]", "max_starting = 0", "max_starting"),
    ("[proactor]", "readytimeout = 5", "readytimeout"),  # a typo is not ignored
    ("[turberfield_twisted.demo.hello]", "restart = sometimes-s3cr3t", "restart"),
    ("[turberfield_twisted.demo.hello]", "backoff_cap = soon-s3cr3t", "backoff_cap"),
    ("[turberfield_twisted.demo.hello]", "max_restarts = 1.5", "max_restarts"),
]


@pytest.mark.parametrize(("section", "line", "key"), BAD_VALUES)
def test_every_bad_value_stops_the_daemon_before_it_starts(tmp_path, section, line, key):
    """twistd proactor's options refuse each bad value: file, line, section, key; no value."""
    config = tmp_path / "my.cfg"
    config.write_text(f"{section}\n{line}\n")
    with pytest.raises(SystemExit) as caught:
        Options().parseOptions(["--config", str(config), "--state-dir", str(tmp_path / "s")])
    message = str(caught.value.code)
    assert f"{config}, line 2" in message, message
    assert key in message and section.strip("[]") in message, message
    assert "s3cr3t" not in message
    assert not (tmp_path / "s").exists()


@pytest_twisted.ensureDeferred
async def test_other_reactor_gets_one_line_saying_how(reactor, tmp_path):
    """Chosen with another reactor, twistd proactor exits non-zero and says how to run it."""
    from turberfield_twisted.testing.daemon import twistd_argv

    argv = twistd_argv(tmp_path)
    argv.insert(1, "--reactor=poll")
    out = defer.Deferred()

    class Collect(Daemon):
        def processEnded(self, reason: Any) -> None:
            out.callback(("\n".join(self.lines), reason.value.exitCode))

    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    reactor.spawnProcess(Collect(), argv[0], argv, env=env, path=str(tmp_path))
    text, code = await out.addTimeout(30, reactor)
    assert code != 0
    assert "twistd --reactor=asyncio -n proactor" in text


@pytest_twisted.ensureDeferred
async def test_own_code_reaches_workers_through_pythonpath_not_PYTHONPATH(reactor, tmp_path,
                                                                          take_ports):
    """
    PYTHONPATH set for the daemon does not reach its workers: the launch is refused
    at once (404, saying where workers look) instead of a job that crash-loops; the
    same directory in the pythonpath key launches it.
    """
    code = tmp_path / "src"
    (code / "myapp").mkdir(parents=True)
    (code / "myapp" / "__init__.py").write_text("")
    (code / "myapp" / "hello.py").write_text(
        "from turberfield_twisted.demo.hello import Hello\n"
        "from turberfield_twisted.worker import run_worker\n"
        "if __name__ == '__main__':\n    run_worker(Hello)\n")
    ports = take_ports(10)
    for n, (key, env) in enumerate([("", {"PYTHONPATH": str(code)}),
                                     (f"pythonpath = {code}\n", {})]):
        config = tmp_path / f"p{n}.cfg"
        config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low}\n"
                          f"child_port_max = {ports.high}\n{key}\n[myapp.hello]\n")
        daemon = Daemon.start(reactor, tmp_path / f"state-{n}", config=config, cwd=tmp_path,
                              env=env)
        try:
            await daemon.listening.addTimeout(30, reactor)
            response = await treq.post(daemon.url + "/jobs", json={"module": "myapp.hello"},
                                       headers=daemon.headers(), timeout=10, reactor=reactor)
            body = json.loads(await response.content())
            if not key:
                assert response.code == 404 and "not PYTHONPATH" in body["error"], body
                continue
            assert response.code == 201, body
            response = await treq.get(f"{daemon.url}/jobs/{body['guid']}?wait=ready&timeout=30",
                                      headers=daemon.headers(), timeout=40, reactor=reactor)
            assert json.loads(await response.content())["state"] == "ready"
        finally:
            await daemon.stop(reactor)  # and its workers; killed if they do not end
    assert children_of(os.getpid()) == []


def test_the_settings_checked_at_start_are_the_initiators(tmp_path, monkeypatch):
    """makeService hands the initiator the settings postOptions checked: none are checked again."""
    from turberfield_twisted import tap
    from turberfield_twisted.daemon import initiator, initiator_config

    options = Options()
    options.parseOptions(["--state-dir", str(tmp_path / "state"),
                          "--listen", "tcp:0:interface=127.0.0.1"])

    def again(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the config is checked again")

    monkeypatch.setattr(initiator_config, "check_config", again)
    top = tap.makeService(options)
    services = list(top)
    kept = next(s for s in services if isinstance(s, Kept))
    try:
        init = next(s for s in services if isinstance(s, initiator.Initiator))
        assert init.settings is options["settings"]
        assert init.cfg is options["cfg"]
    finally:
        kept._store.close()
        kept._state.close()


def _backlog(port: int) -> int:
    """The backlog of the listening TCP socket on 127.0.0.1:``port`` (``ss``'s Send-Q)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    [row] = [line.split() for line in out.splitlines() if line.strip()]
    return int(row[2])


@pytest_twisted.ensureDeferred
async def test_the_api_listens_with_the_configured_backlog(daemons, reactor):
    """listen_backlog (1024 unless set) is the control API socket's backlog, where the
    listen endpoint names none; one that names its own keeps it."""
    if shutil.which("ss") is None:
        absent("ss (iproute2) is needed to read a socket's backlog")
    with free_ports() as ports:
        default = await daemons(ports.low, ports.low + 4)
        configured = await daemons(ports.low + 5, ports.high, extra="listen_backlog = 300\n")
        for daemon, backlog in ((default, 1024), (configured, 300)):
            assert _backlog(int(daemon.url.rsplit(":", 1)[1])) == backlog
    assert with_backlog("tcp:0:interface=127.0.0.1", 7) == "tcp:0:interface=127.0.0.1:backlog=7"
    assert with_backlog("tcp:0:backlog=5", 7) == "tcp:0:backlog=5"
    assert with_backlog("unix:address=/run/p.sock", 7) == "unix:address=/run/p.sock:backlog=7"
    assert with_backlog("systemd:domain=INET:index=0", 7) == "systemd:domain=INET:index=0"
