"""
Logs on disk end to end, through real daemons, real workers and real HTTP:
output read back with ``proactor logs --since`` after a SIGKILL and a
restart; rotation under a worker printing 50 MB; a full disk (a small tmpfs,
mounted as root); reopening; a forgotten job's files removed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from test_cli import proactor
from test_openapi import daemon_in_process
from twisted.internet.defer import Deferred

from turberfield_twisted.daemon.logfiles import LOG_NAME
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.procs import children_of, wait_gone

CHATTER = "turberfield_twisted.testing.chatter"


def config(low: int, high: int, extra: str = "") -> str:
    return (f"[proactor]\nlisten_port = 0\nchild_port_min = {low}\nchild_port_max = {high}\n"
            f"ready_timeout = 30\n{extra}\n[{CHATTER}]\n")


async def call(reactor: Any, url: str, token: str, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    headers = {b"Authorization": [f"Bearer {token}".encode()]}
    data = json.dumps(body).encode() if body is not None else None
    response = await treq.request(method, url + path, headers=headers, data=data, timeout=60,
                                  reactor=reactor)
    content = await response.content()
    kind = response.headers.getRawHeaders(b"content-type", [b""])[0]
    return response.code, json.loads(content) if b"json" in kind else content.decode()


def heard(initiator: Any, guid: str, text: str) -> Deferred[None]:
    """Fire once job ``guid`` writes the line ``text`` (its output, as the daemon reads it)."""
    d: Deferred[None] = Deferred()

    def line(found: Any) -> None:
        if found.guid == guid and found.line == text and not d.called:
            unsubscribe()
            d.callback(None)

    unsubscribe = initiator.subscribe_output(line)
    return d


async def say(reactor: Any, job: Any, lines: int, size: int, mark: str) -> None:
    """Ask the chatter worker (directly, not through the relay) to write its lines."""
    response = await treq.post(job.url(f"/say?lines={lines}&size={size}&mark={mark}"),
                               timeout=120, reactor=reactor)
    assert response.code == 200, await response.text()
    await response.content()


@pytest.mark.timeout(180)
@pytest_twisted.ensureDeferred
async def test_output_is_read_back_since_a_time_after_sigkill(reactor, tmp_path, take_ports):
    """
    A job's output, written before the daemon was SIGKILLed, is read back by
    ``proactor logs GUID --since TIME`` from a daemon started again on the state dir:
    the lines since TIME, from both runs, and none before it.
    """
    ports = take_ports(20)
    (tmp_path / "proactor.cfg").write_text(config(ports.low, ports.high))
    state = tmp_path / "state"
    first = Daemon.start(reactor, state, config=tmp_path / "proactor.cfg", cwd=tmp_path)
    second = None
    try:
        await first.listening.addTimeout(30, reactor)
        code, job = await call(reactor, first.url, first.token, "POST", "/jobs",
                               {"module": CHATTER, "guid": "talker"})
        assert code == 201, job
        code, job = await call(reactor, first.url, first.token, "GET",
                               "/jobs/talker?wait=ready&timeout=30")
        assert job["state"] == "ready", job
        code, said = await call(reactor, first.url, first.token, "POST",
                                "/jobs/talker/proxy/say?mark=old")
        assert code == 200, said
        await first.logged(r"job talker stdout: old").addTimeout(30, reactor)
        since = datetime.now(UTC)
        await call(reactor, first.url, first.token, "POST",
                   "/jobs/talker/proxy/say?lines=2&mark=first-run")
        await first.logged(r"job talker stdout: first-run").addTimeout(30, reactor)
        code, read = await call(reactor, first.url, first.token, "GET", "/jobs/talker/logs")
        assert "first-run" in [entry["line"] for entry in read["lines"]]  # read once on disk
        workers = children_of(first.pid or 0)
        first.signal(signal.SIGKILL)
        await first.ended.addTimeout(30, reactor)
        await wait_gone(reactor, workers, 30)

        second = Daemon.start(reactor, state, config=tmp_path / "proactor.cfg", cwd=tmp_path)
        await second.listening.addTimeout(30, reactor)
        await second.logged(r"job talker stdout: chatter: up").addTimeout(30, reactor)
        code, out, err = await proactor(reactor, "--state-dir", str(state), "--json", "logs",
                                        "talker", "--since", since.isoformat())
        assert (code, err) == (0, ""), err
        found = json.loads(out)["lines"]
        lines = [entry["line"] for entry in found if entry["stream"] == "stdout"]
        assert lines[:3] == ["line 000000000 " + "x" * 25, "line 000000001 " + "x" * 25,
                             "first-run"]
        assert "old" not in lines and "chatter: up" in lines[3:]  # the second run's
        assert {"stream": "stderr", "line": "chatter: on stderr"}.items() <= found[
            [entry["line"] for entry in found].index("chatter: on stderr")].items()
    finally:
        await first.stop(reactor)
        if second is not None:
            await second.stop(reactor)


@pytest.mark.timeout(300)
@pytest_twisted.ensureDeferred
async def test_rotation_keeps_log_backups_files_of_at_most_log_max_bytes(reactor, tmp_path,
                                                                          take_ports):
    """
    Under a worker printing 50 MB, a job's log dir holds its file and exactly
    log_backups rotated ones, none over log_max_bytes; the last line is its last.
    """
    ports = take_ports(20)
    text = config(ports.low, ports.high, "log_max_bytes = 1M\nlog_backups = 3")
    async with daemon_in_process(reactor, tmp_path, text) as initiator:
        guid = await initiator.launch(CHATTER, guid="flood")
        job = await initiator.ready(guid, 30)
        done = heard(initiator, guid, "flooded")
        started = time.monotonic()
        await say(reactor, job, 50 * 1024, 1024, "flooded")  # 50 MiB and a bit
        await done.addTimeout(120, reactor)
        logs = initiator.job(guid)
        last = await _read_last(reactor, tmp_path, guid)
        elapsed = time.monotonic() - started
        where = tmp_path / "state" / "logs" / guid
        sizes = {path.name: path.stat().st_size for path in where.iterdir()}
        assert sorted(sizes) == [LOG_NAME, *(f"{LOG_NAME}.{n}" for n in (1, 2, 3))], sizes
        assert max(sizes.values()) <= 1024 * 1024, sizes
        assert last == "flooded"
        print(f"50 MiB through logs on disk: {elapsed:.1f}s, dropped {logs.log_dropped}")


async def _read_last(reactor: Any, where: Path, guid: str) -> str:
    from turberfield_twisted.cli.locate import read_api

    url, token = read_api(where / "state")
    code, read = await call(reactor, url, token, "GET", f"/jobs/{guid}/logs?lines=1")
    assert code == 200, read
    return str(read["lines"][-1]["line"])


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True, timeout=30)


def _unmount(path: Path) -> None:
    done = subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
    if done.returncode != 0:  # still busy: detach it now, gone once the last file closes
        subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs for a full disk needs root")
@pytest.mark.timeout(180)
@pytest_twisted.ensureDeferred
async def test_a_full_disk_drops_and_counts_lines_and_the_daemon_goes_on(reactor, tmp_path,
                                                                         take_ports):
    """
    With the log dir on a full tmpfs, lines are dropped and counted (GET /jobs/{guid},
    GET /metrics) while the daemon and the job go on answering.
    """
    logs = tmp_path / "logs"
    _mount_tmpfs(logs, "256k")
    try:
        ports = take_ports(20)
        text = config(ports.low, ports.high, f"log_dir = {logs}\nlog_max_bytes = 1M")
        async with daemon_in_process(reactor, tmp_path, text) as initiator:
            from turberfield_twisted.cli.locate import read_api

            url, token = read_api(tmp_path / "state")
            guid = await initiator.launch(CHATTER, guid="full")
            job = await initiator.ready(guid, 30)
            done = heard(initiator, guid, "past-full")
            await say(reactor, job, 4096, 200, "past-full")  # 800 KB into 256 KB
            await done.addTimeout(60, reactor)
            code, view = await call(reactor, url, token, "GET", f"/jobs/{guid}/logs?lines=1")
            assert code == 200  # read back after every write was tried
            code, view = await call(reactor, url, token, "GET", f"/jobs/{guid}")
            assert code == 200 and view["log_dropped"] > 0 and view["state"] == "ready"
            code, metrics = await call(reactor, url, token, "GET", "/metrics")
            dropped = next(float(line.split()[-1]) for line in metrics.splitlines()
                           if line.startswith("proactor_log_lines_dropped_total "))
            assert dropped >= view["log_dropped"]
            again = heard(initiator, guid, "still-here")
            await say(reactor, job, 1, 20, "still-here")  # the job goes on
            await again.addTimeout(30, reactor)
            code, health = await call(reactor, url, token, "GET", "/health")
            assert code == 200 and health["status"] == "ok"
    finally:
        _unmount(logs)


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_sigusr1_and_post_reopen_start_a_new_file_after_a_move(reactor, tmp_path,
                                                                     take_ports):
    """
    After an outside tool moves a job's file away, SIGUSR1 (and POST /logs/reopen)
    make the daemon write to a new file at the same path.
    """
    ports = take_ports(20)
    usr1 = signal.getsignal(signal.SIGUSR1)
    try:
        async with daemon_in_process(reactor, tmp_path, config(ports.low, ports.high)) as init:
            from turberfield_twisted.cli.locate import read_api

            url, token = read_api(tmp_path / "state")
            guid = await init.launch(CHATTER, guid="moved")
            job = await init.ready(guid, 30)
            where = tmp_path / "state" / "logs" / guid
            await _read_last(reactor, tmp_path, guid)  # its first line is on disk
            for n, reopen in enumerate(("signal", "post")):
                (where / LOG_NAME).rename(where / f"rotated-{n}")
                if reopen == "signal":
                    reopened = heard_reopen(init)
                    os.kill(os.getpid(), signal.SIGUSR1)
                    await reopened.addTimeout(30, reactor)
                else:
                    code, body = await call(reactor, url, token, "POST", "/logs/reopen")
                    assert (code, body) == (200, {"reopened": 1})
                said = heard(init, guid, f"after-{reopen}")
                await say(reactor, job, 0, 20, f"after-{reopen}")
                await said.addTimeout(30, reactor)
                assert await _read_last(reactor, tmp_path, guid) == f"after-{reopen}"
                assert f"after-{reopen}".encode() not in (where / f"rotated-{n}").read_bytes()
                assert (where / LOG_NAME).read_bytes().endswith(f"after-{reopen}\n".encode())
    finally:
        signal.signal(signal.SIGUSR1, usr1)


def heard_reopen(initiator: Any) -> Deferred[None]:
    """Fire once the daemon's logs have reopened their files (SIGUSR1's work is done)."""
    from twisted.logger import globalLogPublisher

    d: Deferred[None] = Deferred()

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_format") == "reopening the job log files under {root}" and not d.called:
            globalLogPublisher.removeObserver(observe)
            d.callback(None)

    globalLogPublisher.addObserver(observe)
    return d


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_a_forgotten_job_s_files_are_removed(reactor, tmp_path, take_ports):
    """A job's files stay after it ends, and go when it is forgotten (POST .../forget)."""
    ports = take_ports(20)
    async with daemon_in_process(reactor, tmp_path, config(ports.low, ports.high)) as init:
        from turberfield_twisted.cli.locate import read_api

        url, token = read_api(tmp_path / "state")
        guid = await init.launch(CHATTER, guid="gone")
        await init.launch(CHATTER, guid="other")
        await init.ready(guid, 30)
        await init.ready("other", 30)
        await _read_last(reactor, tmp_path, guid)
        await init.stop(guid)
        where = tmp_path / "state" / "logs" / guid
        await _read_last(reactor, tmp_path, guid)  # after it ended: its lines are all written
        assert b" stdout chatter: up\n" in (where / LOG_NAME).read_bytes()
        code, _ = await call(reactor, url, token, "POST", f"/jobs/{guid}/forget")
        assert code == 200
        await _read_last(reactor, tmp_path, "other")  # queued after the forgetting
        assert not where.exists()
