"""
Run ``twistd -n proactor`` as a child process for end-to-end tests, and
know when it listens (from its log line, not by polling) and when it ends;
:class:`Daemons` starts several for a test and ends them all.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from turberfield_twisted.cli.locate import read_api
from turberfield_twisted.contract import bearer_header
from turberfield_twisted.launch.protocol import ExitStatus
from turberfield_twisted.testing.procs import Child, children_of, wait_gone

__all__ = ["Daemon", "Daemons", "twistd_argv"]

_LISTENING = re.compile(r"control API listening on (https?://\S+)")


def twistd_argv(state_dir: Path, config: Path | None = None,
                listen: str = "tcp:0:interface=127.0.0.1") -> list[str]:
    """The command line of a foreground daemon on a free loopback port."""
    twistd = str(Path(sys.executable).parent / "twistd")
    argv = [twistd, "--pidfile=", "-n", "proactor", "--listen", listen,
            "--state-dir", str(state_dir)]
    if config is not None:
        argv += ["--config", str(config)]
    return argv


class Daemon(Child):
    """
    A ``twistd -n proactor`` child. ``listening`` fires with the API's URL,
    ``ended`` with its :class:`ExitStatus`; ``lines`` is all it logged, and
    :meth:`logged` waits for a line.
    """

    def __init__(self) -> None:
        super().__init__("the daemon")
        self.listening: Deferred[str] = Deferred()
        self.url = ""
        self.token = ""
        self.state_dir: Path | None = None

    @classmethod
    def start(cls, reactor: Any, state_dir: Path, config: Path | None = None,
              cwd: Path | None = None, env: dict[str, str] | None = None,
              **kwargs: Any) -> Daemon:
        """Spawn the daemon (``env`` added to its environment); await ``listening``."""
        daemon = cls()
        daemon.state_dir = state_dir
        argv = twistd_argv(state_dir, config, **kwargs)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **(env or {})}
        transport = reactor.spawnProcess(daemon, argv[0], argv, env=env,
                                         path=str(cwd or state_dir))
        daemon.pid = transport.pid
        return daemon

    def _line(self, line: str) -> None:
        super()._line(line)
        match = _LISTENING.search(line)
        if match and not self.listening.called:
            self.url = match.group(1)
            assert self.state_dir is not None
            _, self.token = read_api(self.state_dir)
            self.listening.callback(self.url)

    def _ending(self, status: ExitStatus) -> None:
        if not self.listening.called:
            self.listening.errback(RuntimeError(
                f"the daemon ended ({status.describe()}) before listening:\n"
                + "\n".join(self.lines[-20:])))

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Signal the daemon (by its pid)."""
        if self.pid is not None and not self.ended.called:
            os.kill(self.pid, sig)

    def headers(self) -> dict[bytes, list[bytes]]:
        """The admin Authorization header."""
        return bearer_header(self.token)


class Daemons:
    """
    ``twistd -n proactor`` daemons for one test, each with a config and a
    state dir of its own under ``where``: :meth:`start` one, and
    :meth:`stop` ends them all with every worker they started.
    """

    def __init__(self, reactor: Any, where: Path):
        self.reactor = reactor
        self.where = where
        self.started: list[Daemon] = []

    async def start(self, low: int, high: int, extra: str = "", listen: bool = True) -> Daemon:
        """
        A daemon on a free loopback port with child ports ``low`` to
        ``high`` (``extra``: more lines for its ``[proactor]`` section),
        listening unless ``listen`` is false (then await its ``listening``).
        """
        n = len(self.started)
        config = self.where / f"proactor-{n}.cfg"
        config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {low}\n"
                          f"child_port_max = {high}\n{extra}")
        daemon = Daemon.start(self.reactor, self.where / f"state-{n}", config=config,
                              cwd=self.where)
        self.started.append(daemon)
        if listen:
            await daemon.listening.addTimeout(30, self.reactor)
        return daemon

    async def stop(self) -> None:
        """SIGTERM each daemon; wait until it and every worker it had are gone."""
        for daemon in self.started:
            await self.stop_one(daemon)

    async def stop_one(self, daemon: Daemon) -> None:
        """SIGTERM ``daemon`` (started here or not); wait until it and its workers are gone."""
        workers = children_of(daemon.pid or 0)
        daemon.signal(signal.SIGTERM)
        await daemon.ended.addTimeout(30, self.reactor)
        await wait_gone(self.reactor, workers)
