"""
Where a worker process is started. Local ``spawnProcess`` is the provider
here; a cluster launcher (e.g. ``srun``) would provide the same interface.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import sys
from collections.abc import Mapping

from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessProtocol, IProcessTransport, IReactorProcess
from zope.interface import Interface, implementer

from .process import LIFELINE_FD

__all__ = ["ILauncher", "LocalLauncher", "SpawnFailed", "UnknownModule", "worker_argv"]

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class UnknownModule(LookupError):
    """The module named for a job can't be found or isn't a valid name."""

    def __init__(self, module: str, reason: str = "no such module"):
        self.module = module
        super().__init__(f"module {module[:200]!r}: {reason}")


class SpawnFailed(RuntimeError):
    """The operating system refused to start the worker process."""


def worker_argv(python: str, module: str, guid: str, port: int) -> list[str]:
    """The worker command line: ``python -P -m MODULE --guid G --port P``."""
    return [python, "-P", "-m", module, "--guid", guid, "--port", str(port)]


class ILauncher(Interface):
    """Starts worker processes for an Initiator."""

    def check(module: str) -> None:
        """Raise :class:`UnknownModule` if ``module`` can't be run."""

    def signal(process: IProcessTransport, sig: int, pid: int) -> None:
        """
        Send ``sig`` to the worker (started as ``pid``) and whatever it
        started, even once the worker itself has been reaped.
        """

    def spawn(
        protocol: IProcessProtocol, module: str, guid: str, port: int
    ) -> IProcessTransport:
        """
        Start ``python -P -m module --guid guid --port port`` in a new
        session, stdin a pipe from ``protocol``, stdout and stderr pipes to
        it, and fd 3 the lifeline. Raise :class:`SpawnFailed` if it can't.
        """


def _minimal_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


@implementer(ILauncher)
class LocalLauncher:
    """
    Spawn workers on this host with ``reactor.spawnProcess``, each the
    leader of its own session (through ``setsid(1)`` where it exists, so
    the pid is the process group id from the first instruction), with the
    current interpreter and a minimal environment: ``PATH``, ``LANG``,
    ``PYTHONUNBUFFERED`` and ``PYTHONPATH`` if ``pythonpath`` is given.

    ``process_groups`` signals a worker's whole group; without it (for
    fake processes in tests) only the process itself is signalled.
    """

    def __init__(
        self,
        reactor: IReactorProcess,
        python: str = sys.executable,
        pythonpath: str = "",
        setsid: str | None = shutil.which("setsid"),
        process_groups: bool = True,
    ):
        self._reactor = reactor
        self.python = python
        self.pythonpath = pythonpath
        self.setsid = setsid
        self.process_groups = process_groups
        self.env = _minimal_env({"PYTHONPATH": pythonpath} if pythonpath else {})

    def check(self, module: str) -> None:
        if not _MODULE.match(module):
            raise UnknownModule(module, "not a dotted module name")
        paths = [p for p in self.pythonpath.split(os.pathsep) if p]
        saved = sys.path[:]
        sys.path[:0] = paths
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as exc:
            raise UnknownModule(module, type(exc).__name__) from None
        finally:
            sys.path[:] = saved
        if spec is None:
            raise UnknownModule(module)

    def signal(self, process: IProcessTransport, sig: int, pid: int) -> None:
        if self.process_groups:
            try:
                os.killpg(pid, sig)
                return
            except ProcessLookupError:
                return
            except PermissionError:
                pass  # not a group leader (yet): signal the process alone
        try:
            process.signalProcess(signal.Signals(sig).name[3:])
        except ProcessExitedAlready:
            pass

    def spawn(
        self, protocol: IProcessProtocol, module: str, guid: str, port: int
    ) -> IProcessTransport:
        args = worker_argv(self.python, module, guid, port)
        executable = self.python
        if self.setsid:
            executable, args = self.setsid, ["setsid", *args]
        try:
            return self._reactor.spawnProcess(
                protocol,
                executable,
                args,
                env=self.env,
                childFDs={0: "w", 1: "r", 2: "r", LIFELINE_FD: "w"},
            )
        except OSError as exc:
            raise SpawnFailed(f"could not start {module}: {exc.strerror or exc}") from None
