"""
Run ``proactord -n proactor`` (as ``make run`` does; or ``twistd -n
proactor``) as a child process for end-to-end tests, and know when it
listens (from its log line, not by polling) and when it ends;
:class:`Daemons` starts several for a test and ends them all. A daemon's
control API listens on a port of a
:func:`~turberfield_twisted.testing.ports.free_ports` block held until it
ends, unless the test says where.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from turberfield_twisted.cli.locate import read_api
from turberfield_twisted.contract import bearer_header
from turberfield_twisted.launch.protocol import ExitStatus
from turberfield_twisted.testing.ports import PortRange, free_ports
from turberfield_twisted.testing.procs import Child, children_of, kill_left, wait_gone

__all__ = ["COMMANDS", "Daemon", "Daemons", "twistd_argv"]

_LISTENING = re.compile(r"control API listening on (https?://\S+)")


#: The commands that run the daemon: ``proactord`` (what ``make run`` runs) and ``twistd``.
COMMANDS = ("proactord", "twistd")


def twistd_argv(state_dir: Path, config: Path | None = None,
                listen: str = "tcp:0:interface=127.0.0.1",
                command: str = "proactord") -> list[str]:
    """
    The command line of a foreground daemon on a free loopback port, run
    by ``command`` (one of :data:`COMMANDS`, with twistd's options).
    """
    if command not in COMMANDS:
        raise ValueError(f"command {command!r} is not one of {COMMANDS}")
    program = str(Path(sys.executable).parent / command)
    argv = [program, "--pidfile=", "-n", "proactor", "--listen", listen,
            "--state-dir", str(state_dir)]
    if config is not None:
        argv += ["--config", str(config)]
    return argv


class Daemon(Child):
    """
    A ``proactord -n proactor`` child (or ``twistd``'s). ``listening`` fires with the API's URL,
    ``ended`` with its :class:`ExitStatus`; ``lines`` is all it logged, and
    :meth:`logged` waits for a line. ``ports`` is the block of child ports
    held for it, if :class:`Daemons` chose them.
    """

    def __init__(self) -> None:
        super().__init__("the daemon")
        self.listening: Deferred[str] = Deferred()
        self.url = ""
        self.token = ""
        self.state_dir: Path | None = None
        self.ports: PortRange | None = None
        self._api_port: PortRange | None = None

    @classmethod
    def start(cls, reactor: Any, state_dir: Path, config: Path | None = None,
              cwd: Path | None = None, env: dict[str, str] | None = None,
              listen: str | None = None, prefix: Sequence[str] = (),
              command: str = "proactord") -> Daemon:
        """
        Spawn the daemon (``env`` added to its environment) with its API on
        ``listen`` (an endpoint; by default 127.0.0.1 and a free port, held
        until the daemon ends); await ``listening``. ``prefix`` goes before
        its command line: a program that execs the rest (``nsenter
        --net=...``, so that its pid is the daemon's). ``command`` runs it
        (:data:`COMMANDS`: ``proactord`` as ``make run`` does, or ``twistd``).
        """
        daemon = cls()
        daemon.state_dir = state_dir
        if listen is None:
            daemon._api_port = free_ports(1)
            listen = f"tcp:{daemon._api_port.low}:interface=127.0.0.1"
        argv = [*prefix, *twistd_argv(state_dir, config, listen, command)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **(env or {})}
        try:
            transport = reactor.spawnProcess(daemon, argv[0], argv, env=env,
                                             path=str(cwd or state_dir))
        except BaseException:
            daemon._let_port_go()
            raise
        daemon.pid = transport.pid
        return daemon

    def _let_port_go(self) -> None:
        if self._api_port is not None:
            self._api_port.release()
            self._api_port = None

    async def stop(self, reactor: Any, timeout: float = 30.0) -> None:
        """
        SIGTERM the daemon; wait (``timeout`` seconds for each) until it has
        ended and then every worker it had. If either wait fails, what is
        left of them is killed (SIGKILL, by pid) before the failure is raised.
        """
        workers = children_of(self.pid or 0)
        try:
            self.signal(signal.SIGTERM)
            await self.ended.addTimeout(timeout, reactor)
            await wait_gone(reactor, workers, timeout)
        except BaseException:
            await kill_left(reactor, [pid for pid in (self.pid, *workers) if pid])
            raise

    def _line(self, line: str) -> None:
        super()._line(line)
        match = _LISTENING.search(line)
        if match and not self.listening.called:
            self.url = match.group(1)
            assert self.state_dir is not None
            _, self.token = read_api(self.state_dir)
            self.listening.callback(self.url)

    def _ending(self, status: ExitStatus) -> None:
        self._let_port_go()
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

    async def call(self, reactor: Any, method: str, path: str, body: Any = None,
                   timeout: float = 30.0) -> tuple[int, Any]:
        """
        ``method path`` with the admin token (``body`` sent as JSON), on a
        connection of its own: the status and the answer, parsed if JSON.
        """
        import treq
        from twisted.web.http_headers import Headers

        response = await treq.request(
            method, self.url + path, headers=Headers(self.headers()),
            data=None if body is None else json.dumps(body).encode(),
            timeout=timeout, reactor=reactor, persistent=False)
        content = await response.content()
        try:
            return response.code, json.loads(content)
        except ValueError:
            return response.code, content


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

    async def start(self, low: int | None = None, high: int | None = None, extra: str = "",
                    listen: bool = True, *, size: int = 20) -> Daemon:
        """
        A daemon on a free loopback port with child ports ``low`` to
        ``high`` or, if they are not given, a :func:`free_ports` block of
        ``size`` (the daemon's ``ports``) held until :meth:`stop`
        (``extra``: more lines for its ``[proactor]`` section), listening
        unless ``listen`` is false (then await its ``listening``).
        """
        held = free_ports(size) if low is None or high is None else None
        if held is not None:
            low, high = held.low, held.high
        n = len(self.started)
        config = self.where / f"proactor-{n}.cfg"
        config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {low}\n"
                          f"child_port_max = {high}\n{extra}")
        try:
            daemon = Daemon.start(self.reactor, self.where / f"state-{n}", config=config,
                                  cwd=self.where)
        except BaseException:
            if held is not None:
                held.release()
            raise
        daemon.ports = held
        self.started.append(daemon)
        if listen:
            await daemon.listening.addTimeout(30, self.reactor)
        return daemon

    async def stop(self, timeout: float = 30.0) -> None:
        """
        SIGTERM each daemon; wait until it and every worker it had are gone
        (one that does not end within ``timeout`` seconds is killed, and the
        others are still stopped); let the ports go; then raise the first
        failure, if any.
        """
        failures: list[BaseException] = []
        for daemon in self.started:
            try:
                await daemon.stop(self.reactor, timeout)
            except Exception as failure:
                failures.append(failure)
            finally:
                if daemon.ports is not None:
                    daemon.ports.release()
        if failures:
            raise failures[0]
