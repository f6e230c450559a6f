"""
The ``proactor`` commands that cover the rest of the API (config, modules,
forget, ls's filters, stop/restart --wait, hook ids by prefix), the errors
that say what to do next, and a worker's control characters shown escaped
(unless ``--raw``): real ``proactor`` processes against a ControlAPI this
test process serves on 127.0.0.1, with real workers behind it.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from test_cli import TOKEN, _relay, proactor, streaming
from twisted.internet.endpoints import TCP4ServerEndpoint

from turberfield_twisted import Initiator
from turberfield_twisted.cli.main import main
from turberfield_twisted.contract import API_FILE, TOKEN_FILE
from turberfield_twisted.daemon.statedir import write_private
from turberfield_twisted.hooks.dispatcher import HookDispatcher
from turberfield_twisted.testing.configs import DEMO, initiator_config
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of, wait_gone

#: A worker whose output holds terminal sequences (retitle the window, clear the screen).
ESCAPES = "escapes"
SEQUENCE = "\x1b]0;pwned\x07\x1b[2J"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J"
WORKER = f'''
import sys
from turberfield_twisted.demo.hello import Hello
from turberfield_twisted.worker import run_worker

if __name__ == "__main__":
    sys.stderr.write({SEQUENCE + "starting"!r} + "\\n")
    sys.stderr.flush()
    run_worker(Hello)
'''


@pytest_twisted.async_yield_fixture
async def served(reactor: Any, tmp_path: Path, take_ports: Any) -> Any:
    """
    An Initiator (the demo, and :data:`ESCAPES` from ``tmp_path / "src"``) and its
    ControlAPI on 127.0.0.1, on ports from free_ports; ``tmp_path / "state"`` says
    where, and holds the token.
    """
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{ESCAPES}.py").write_text(WORKER)
    with free_ports(20) as ports:
        init = Initiator(None, guid="init", reactor=reactor, cfg=initiator_config(
            ports.low, ports.high, pythonpath=str(src),
            extra=f"[{ESCAPES}]\noverridable = greeting\n"))
        hooks = HookDispatcher(reactor, init.http)
        from turberfield_twisted.http.api import ControlAPI

        port = await TCP4ServerEndpoint(reactor, take_ports(1).low, interface="127.0.0.1").listen(
            ControlAPI(init, TOKEN, reactor, hooks=hooks).site())
        init.listening("127.0.0.1", port.getHost().port)
        state = tmp_path / "state"
        write_private(state / API_FILE, f"http://127.0.0.1:{init.api_address[1]}\n")
        write_private(state / TOKEN_FILE, TOKEN + "\n")
        init.startService()
        try:
            yield init, ["--state-dir", str(state)]
        finally:
            pids = [job.pid for job in init.workers.values() if job.pid]
            await init.stopService()
            await wait_gone(reactor, pids)
            await port.stopListening()
            await hooks.close()
            assert children_of(os.getpid()) == []


# -- usage, in this process ------------------------------------------------------------


@pytest.mark.parametrize(("argv", "said"), [
    (["launch", DEMO, "--set", "greeting"],
     "argument --set: expected KEY=VALUE, not 'greeting' (see proactor launch --help)"),
    (["hooks"], "the following arguments are required: {ls,add,rm} (see proactor hooks --help)"),
    (["config", "g"], "the following arguments are required: KEY=VALUE (see proactor config"
                      " --help)"),
    (["ls", "--state", "readyish"], "argument --state: expected states of waiting, starting,"),
])
def test_a_usage_error_points_at_the_commands_own_help(argv, said, capsys):
    """A usage error names what was wrong and the help of the command it is about."""
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"proactor: error: {said}"), line


def test_hooks_help_lists_its_actions(capsys):
    """proactor hooks --help, and proactor --help's line for hooks, list ls, add and rm."""
    assert main(["hooks", "--help"]) == 0
    out = capsys.readouterr().out
    assert "{ls,add,rm}" in out and "list subscriptions" in out and "drop a subscription" in out
    assert main(["--help"]) == 0
    assert "hooks ls | add URL EVENT... | rm ID" in " ".join(capsys.readouterr().out.split())


# -- as processes -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_config_changes_keys_live_and_modules_lists_what_may_be_launched(served, reactor):
    """
    config GUID KEY=VALUE reaches the worker's on_config; modules lists each module
    with its overridable keys and their defaults; refusals say what would do.
    """
    init, at = served
    guid = await init.launch(DEMO)
    await init.ready(guid, timeout=15)
    code, out, err = await proactor(reactor, *at, "config", guid[:8], "greeting=hej")
    assert (code, out, err) == (0, f"{guid} greeting=hej\n", "")  # kept: no note
    code, seen, _ = await proactor(reactor, *at, "send", guid, "GET", "/")
    assert json.loads(seen)["config"]["greeting"] == "hej"
    code, out, err = await proactor(reactor, *at, "config", guid, "colour=red")
    assert code == 1 and err.endswith("does not allow 'colour' to be set (it allows api_key,"
                                      " greeting) (HTTP 403)\n")
    code, out, _ = await proactor(reactor, *at, "modules")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["MODULE", "LAUNCHER", "WARM", "OVERRIDABLE"]
    assert [DEMO, "local", "no", "api_key,greeting=hello"] in rows
    code, _, err = await proactor(reactor, *at, "launch", DEMO[:-1])
    assert code == 1 and f"(did you mean {DEMO!r}?)" in err


@pytest_twisted.ensureDeferred
async def test_ls_hides_ended_jobs_forget_drops_them_and_stop_restart_wait(served, reactor):
    """
    stop --wait answers once the job has exited; ls then hides it (saying so), ls --all
    and --state show it; forget drops it (not a running one); restart --wait answers
    once the job is ready again, on a new process.
    """
    init, at = served
    first, second = await init.launch(DEMO), await init.launch(DEMO)
    for guid in (first, second):
        await init.ready(guid, timeout=15)
    code, out, _ = await proactor(reactor, *at, "stop", "--wait", first)
    assert (code, out) == (0, f"{first} exited\n")
    code, out, _ = await proactor(reactor, *at, "ls")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == [second[:12]]
    assert lines[-1] == "(1 ended job not shown: ls --all shows them, forget --all forgets them)"
    code, out, _ = await proactor(reactor, *at, "ls", "--all")
    assert {line.split()[0] for line in out.splitlines()[1:]} == {first[:12], second[:12]}
    code, out, _ = await proactor(reactor, *at, "--json", "ls", "--state", "exited,failed")
    assert [job["guid"] for job in json.loads(out)["jobs"]] == [first]
    code, _, err = await proactor(reactor, *at, "forget", second)
    assert code == 1 and f"job {second} is ready: stop it first, then forget it" in err
    code, out, _ = await proactor(reactor, *at, "forget", first[:6])
    assert (code, out) == (0, f"{first} forgotten\n")
    assert list(init.workers) == [second]
    old = init.job(second).pid
    code, out, err = await proactor(reactor, *at, "restart", "--wait", second[:6], timeout=40)
    assert (code, out) == (0, f"{second} ready\n"), err
    assert init.job(second).state == "ready" and init.job(second).pid != old


@pytest_twisted.ensureDeferred
async def test_a_hook_is_named_by_any_unique_beginning_of_its_id(served, reactor):
    """hooks rm takes a prefix of a hook's id, as guids are taken."""
    _, at = served
    code, out, _ = await proactor(reactor, *at, "--json", "hooks", "add",
                                  "http://127.0.0.1:9/hook", "ready")
    hook = json.loads(out)["id"]
    code, out, err = await proactor(reactor, *at, "hooks", "rm", hook[:4])
    assert (code, out, err) == (0, "", "")
    code, out, _ = await proactor(reactor, *at, "--json", "hooks", "ls")
    assert json.loads(out) == {"hooks": []}
    code, _, err = await proactor(reactor, *at, "hooks", "rm", hook[:4])
    assert code == 1 and f"no hook's id is or begins with {hook[:4]!r}" in err


@pytest_twisted.ensureDeferred
async def test_an_unreachable_daemon_says_which_address_from_where_and_how_to_start_one(
        reactor, tmp_path):
    """No daemon at the address: which one, from --url or the state dir's file, how to start."""
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    with free_ports(1) as ports:  # held, and nothing listens on them
        url = f"http://127.0.0.1:{ports.low}"
        code, _, err = await proactor(reactor, "--url", url, "--token-file", str(token), "ls")
        assert code == 1 and err.startswith(f"proactor: error: cannot reach {url}: ")
        assert err.endswith("(the address given with --url; is the daemon running? start one"
                            " with: twistd -n proactor (make run, in a clone), or see"
                            " --state-dir, --url)\n")
        state = tmp_path / "state"
        write_private(state / API_FILE, url + "\n")
        write_private(state / TOKEN_FILE, TOKEN + "\n")
        code, _, err = await proactor(reactor, "--state-dir", str(state), "ls")
        assert code == 1 and f"(the address read from {state / API_FILE}; is the daemon" in err


@pytest_twisted.ensureDeferred
async def test_a_workers_terminal_sequences_are_shown_escaped_unless_raw(served, reactor):
    """
    A worker that prints ESC sequences: logs, logs -f and watch (its last_error) show
    them as \\x1b text, never the bytes; --raw shows them as the worker wrote them.
    """
    init, at = served
    guid = await init.launch(ESCAPES)
    job = await init.ready(guid, timeout=15)
    code, out, _ = await proactor(reactor, *at, "logs", guid)
    assert code == 0 and f"stderr {SHOWN}starting" in out and "\x1b" not in out
    code, out, _ = await proactor(reactor, *at, "logs", "--raw", guid)
    assert code == 0 and f"stderr {SEQUENCE}starting" in out
    follow, follower = streaming(reactor, *at, "logs", "-f", guid)
    watch, watcher = streaming(reactor, *at, "watch")
    try:
        await watch.watching.addTimeout(20, reactor)
        await follow.until(lambda line: line.endswith(f"{SHOWN}starting"), reactor)
        code, _, _ = await _relay(reactor, init, guid, "/say", f"{SEQUENCE}said".encode())
        assert code == 202
        await follow.until(lambda line: line.endswith(f"stdout {SHOWN}said"), reactor)
        os.kill(job.pid, signal.SIGKILL)  # its last_error holds its stderr lines
        await watch.until(lambda line: " backoff " in line and f"{SHOWN}starting" in line,
                          reactor)
    finally:
        for run, transport in ((follow, follower), (watch, watcher)):
            if not run.ended.called:
                transport.signalProcess("INT")
    for run in (follow, watch):
        status = await run.ended.addTimeout(20, reactor)
        assert status.code == 0, run.lines
        assert not any("\x1b" in line or "\x07" in line for line in run.lines), run.lines


# -- tokens and roles -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tokens_and_roles_from_the_command_line(served, reactor, tmp_path):
    """
    token add writes the secret to a 0600 file, never to ls; a viewer's token lists jobs but
    is told which role a launch needs; whoami names it; rm revokes it at once.
    """
    _, at = served
    secret_file = tmp_path / "eyes.token"
    code, out, err = await proactor(reactor, *at, "token", "add", "eyes", "viewer", "--out",
                                    str(secret_file))
    assert code == 0 and out.strip() == f"token eyes written to {secret_file}", err
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    secret = secret_file.read_text().strip()
    code, out, err = await proactor(reactor, *at, "token", "ls")
    assert code == 0 and "eyes" in out and "viewer" in out and secret not in out + err
    viewer = [*at, "--token-file", str(secret_file)]
    code, out, err = await proactor(reactor, *viewer, "whoami")
    assert (code, out.strip()) == (0, "eyes: viewer (any module or service)"), err
    code, out, err = await proactor(reactor, *viewer, "ls")
    assert code == 0, err
    code, out, err = await proactor(reactor, *viewer, "launch", DEMO)
    assert code == 1 and "POST /jobs needs the operator role" in err
    assert "see proactor whoami" in err and secret not in err
    code, out, err = await proactor(reactor, *at, "token", "rm", "eyes")
    assert code == 0, err
    code, out, err = await proactor(reactor, *viewer, "ls")
    assert code == 1 and "401" in err
