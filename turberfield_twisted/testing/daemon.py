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

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import ProcessProtocol

from ..contract import bearer_header
from ..process import ExitStatus, LineSplitter
from ..state import TOKEN_FILE
from .procs import children_of, wait_gone

__all__ = ["Daemon", "Daemons", "twistd_argv"]

_LISTENING = re.compile(r"control API listening on (http://\S+)")


def twistd_argv(state_dir: Path, config: Path | None = None,
                listen: str = "tcp:0:interface=127.0.0.1") -> list[str]:
    """The command line of a foreground daemon on a free loopback port."""
    twistd = str(Path(sys.executable).parent / "twistd")
    argv = [twistd, "--pidfile=", "-n", "proactor", "--listen", listen,
            "--state-dir", str(state_dir)]
    if config is not None:
        argv += ["--config", str(config)]
    return argv


class Daemon(ProcessProtocol):
    """
    A ``twistd -n proactor`` child. ``listening`` fires with the API's URL,
    ``ended`` with its :class:`ExitStatus`; ``lines`` is all it logged, and
    :meth:`logged` waits for a line.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.listening: Deferred[str] = Deferred()
        self.ended: Deferred[ExitStatus] = Deferred()
        self.url = ""
        self.token = ""
        self.pid: int | None = None
        self.state_dir: Path | None = None
        split = LineSplitter(self._line)
        self._splitters = {1: split, 2: split}
        self._waiting: list[tuple[re.Pattern[str], int, Deferred[int]]] = []

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

    def logged(self, pattern: str, after: int = 0) -> Deferred[int]:
        """
        Fire with the index in ``lines`` of the first line from index
        ``after`` on that ``pattern`` (a regular expression) matches, at
        once if there is one; fail if the daemon ends first.
        """
        wanted = re.compile(pattern)
        for index in range(after, len(self.lines)):
            if wanted.search(self.lines[index]):
                return succeed(index)
        if self.ended.called:
            return fail(RuntimeError(f"the daemon ended without logging {pattern!r}"))
        d: Deferred[int] = Deferred()
        self._waiting.append((wanted, after, d))
        return d

    def _line(self, line: str) -> None:
        self.lines.append(line)
        index = len(self.lines) - 1
        for item in list(self._waiting):
            wanted, after, d = item
            if index >= after and wanted.search(line):
                self._waiting.remove(item)
                d.callback(index)
        match = _LISTENING.search(line)
        if match and not self.listening.called:
            self.url = match.group(1)
            assert self.state_dir is not None
            self.token = (self.state_dir / TOKEN_FILE).read_text().strip()
            self.listening.callback(self.url)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        splitter = self._splitters.get(childFD)
        if splitter is not None:
            splitter.feed(data)

    def processEnded(self, reason: Any) -> None:
        self._splitters[1].flush()
        status = ExitStatus.from_reason(reason)
        waiting, self._waiting = self._waiting, []
        for wanted, _, d in waiting:
            d.errback(RuntimeError(f"the daemon ended without logging {wanted.pattern!r}"))
        if not self.listening.called:
            self.listening.errback(RuntimeError(
                f"the daemon ended ({status.describe()}) before listening:\n"
                + "\n".join(self.lines[-20:])))
        self.ended.callback(status)

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
            workers = children_of(daemon.pid or 0)
            daemon.signal(signal.SIGTERM)
            await daemon.ended.addTimeout(30, self.reactor)
            await wait_gone(self.reactor, workers)
