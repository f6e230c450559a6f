"""
Declared jobs end to end: started with a real daemon in the order their
``requires`` say, reconciled on SIGHUP, ``POST /reload`` and ``proactor
reload``, and systemd told READY=1 through a real datagram socket.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.utils import getProcessOutputAndValue

from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import PortRange
from turberfield_twisted.testing.procs import pid_alive, wait_gone

SLOW = "turberfield_twisted.testing.slow"
DEMO = "turberfield_twisted.demo.hello"
PROACTOR = str(Path(sys.executable).parent / "proactor")


def declared(ports: PortRange) -> str:
    """The config: two declared jobs, second requiring first, on child ``ports``."""
    return f"""
[proactor]
listen_port = 0
child_port_min = {ports.low}
child_port_max = {ports.high}
ready_timeout = 20

[{SLOW}]
ready_delay = 2

[job:first]
module = {SLOW}

[job:second]
module = {DEMO}
requires = first
"""


THIRD = f"""
[job:third]
module = {DEMO}
session = s3
"""


class Notified(DatagramProtocol):
    """The systemd end of NOTIFY_SOCKET: each datagram, and waiters for one."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._waiting: list[tuple[str, int, Deferred[int]]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.messages.append(data.decode())
        for item in list(self._waiting):
            if self._find(item[0], item[1]) is not None:
                self._waiting.remove(item)
                item[2].callback(self._find(item[0], item[1]))

    def _find(self, line: str, after: int) -> int | None:
        for index in range(after, len(self.messages)):
            if line in self.messages[index].splitlines():
                return index
        return None

    def got(self, line: str, after: int = 0) -> Deferred[int]:
        """Fire with the index of the first message from ``after`` on holding ``line``."""
        d: Deferred[int] = Deferred()
        found = self._find(line, after)
        if found is not None:
            d.callback(found)
        else:
            self._waiting.append((line, after, d))
        return d


def logged(daemon: Daemon, pattern: str, after: int = 0) -> Deferred[int]:
    """The index of the daemon's first log line from ``after`` on matching ``pattern``."""
    from twisted.internet import reactor

    return daemon.logged(pattern, after).addTimeout(30, reactor)


async def call(reactor: Any, daemon: Daemon, method: str, path: str) -> tuple[int, Any]:
    response = await treq.request(method, daemon.url + path, headers=daemon.headers(),
                                  timeout=60, reactor=reactor)
    content = await response.content()
    return response.code, json.loads(content) if content else None


async def jobs(reactor: Any, daemon: Daemon) -> dict[str, dict[str, Any]]:
    return {job["guid"]: job for job in (await call(reactor, daemon, "GET", "/jobs"))[1]["jobs"]}


@pytest_twisted.ensureDeferred
async def test_declared_jobs_start_in_order_and_sighup_reconciles_them(reactor, tmp_path,
                                                                        take_ports):
    """
    second requires first, whose module takes two seconds to get ready: second is
    spawned only once first is ready, and systemd hears READY=1 after both. A third
    section and SIGHUP start it, the others keep their pids; removing it and SIGHUP
    stop it. A bad file changes nothing (POST /reload answers 400, SIGHUP logs why);
    ``proactor reload`` reports what it did.
    """
    config = tmp_path / "proactor.cfg"
    text = declared(take_ports(50))
    config.write_text(text)
    notified = Notified()
    socket_path = tmp_path / "notify"
    notify_port = reactor.listenUNIXDatagram(str(socket_path), notified)
    daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                          env={"NOTIFY_SOCKET": str(socket_path)})
    try:
        await daemon.listening.addTimeout(30, reactor)
        await notified.got("READY=1").addTimeout(30, reactor)
        first_ready = await logged(daemon, rf"job first \({SLOW}\) ready")
        second_spawned = await logged(daemon, r"job second spawned")
        second_ready = await logged(daemon, rf"job second \({DEMO}\) ready")
        told_ready = await logged(daemon, r"ready: the control API listens")
        assert first_ready < second_spawned < second_ready < told_ready
        found = await jobs(reactor, daemon)
        assert {g: j["state"] for g, j in found.items()} == {"first": "ready",
                                                              "second": "ready"}
        assert found["second"]["requires"] == ["first"] and found["first"]["declared"]
        pids = {guid: job["pid"] for guid, job in found.items()}

        # A third section, then SIGHUP: it starts; the others keep their processes.
        config.write_text(text + THIRD)
        seen = len(daemon.lines)
        daemon.signal(signal.SIGHUP)
        await logged(daemon, r"SIGHUP: reloading the config", after=seen)
        await logged(daemon, r"config reloaded: started third;", after=seen)
        code, third = await call(reactor, daemon, "GET", "/jobs/third?wait=ready&timeout=30")
        assert (third["state"], third["session"]) == ("ready", "s3")
        found = await jobs(reactor, daemon)
        assert {guid: found[guid]["pid"] for guid in pids} == pids
        await notified.got("RELOADING=1").addTimeout(30, reactor)

        # Removed, then SIGHUP: it stops; the others still keep theirs.
        config.write_text(text)
        seen = len(daemon.lines)
        daemon.signal(signal.SIGHUP)
        await logged(daemon, r"config reloaded: started none; stopped third;", after=seen)
        code, gone = await call(reactor, daemon, "GET", "/jobs/third?wait=exited&timeout=30")
        assert gone["state"] == "exited" and gone["declared"] is False
        await wait_gone(reactor, [third["pid"]])
        found = await jobs(reactor, daemon)
        assert {guid: found[guid]["pid"] for guid in pids} == pids
        assert all(pid_alive(pid) for pid in pids.values())

        # A bad file: POST /reload answers 400 with file, line and key; nothing changes.
        config.write_text(text.replace("requires = first", "requires = nobody-s3cr3t"))
        code, answer = await call(reactor, daemon, "POST", "/reload")
        assert code == 400, answer
        assert f"{config}, line 16: key 'requires' in [job:second]" in answer["error"]
        assert "s3cr3t" not in answer["error"]
        seen = len(daemon.lines)
        daemon.signal(signal.SIGHUP)
        line = await logged(daemon, r"SIGHUP: the config is not reloaded: ", after=seen)
        assert f"{config}, line 16: key 'requires'" in daemon.lines[line]
        assert "s3cr3t" not in "\n".join(daemon.lines)
        found = await jobs(reactor, daemon)
        assert {guid: found[guid]["pid"] for guid in pids} == pids

        # The CLI: unchanged, nothing to restart for.
        config.write_text(text)
        out, err, code = await getProcessOutputAndValue(
            PROACTOR, ["--state-dir", str(tmp_path / "state"), "reload"], env={},
            reactor=reactor)
        assert code == 0, err
        assert out.decode().split("\n")[3].split() == ["unchanged:", "first,second"]
    finally:
        try:
            await daemon.stop(reactor)  # and its workers; killed if they do not end
            await notified_stopping(notified, reactor)
        finally:
            await notify_port.stopListening()


async def notified_stopping(notified: Notified, reactor: Any) -> None:
    """systemd heard STOPPING=1 as the daemon stopped."""
    await notified.got("STOPPING=1").addTimeout(10, reactor)
