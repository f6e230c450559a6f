"""
Workers on this host, started cold: :class:`LocalLauncher` runs ``python
-P -m MODULE --guid G --port P`` with ``reactor.spawnProcess``, each the
leader of a session of its own, its config on stdin, its lifeline on fd 3
and its ready fd on 4; :class:`LocalProcess` is such a worker as the
lifecycle sees it. The pieces a warm or a Slurm launcher shares with it
(the command line, the environment, spawning in a session, a process
that ends and is signalled by group) are here too.

A job's rlimits (``max_open_files``, ``max_cpu_seconds``) are set before
its interpreter starts: the worker is run through util-linux ``prlimit``
(``prlimit --cpu=S:S --nofile=N:N -- setsid python ...``), so the first
instruction of the interpreter already runs under them. Without
``prlimit`` on the PATH they are set with ``prlimit(2)`` on its pid just
after the spawn, while the interpreter starts.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from zope.interface import implementer

from turberfield_twisted.config.names import MODULE
from turberfield_twisted.config.policy import Limits
from turberfield_twisted.contract import (
    LISTEN_FDS_START,
    lifeline_fd,
    reachable,
    ready_fd,
    socket_env,
)
from turberfield_twisted.errors import SpawnFailed, UnknownModule
from turberfield_twisted.launch.interfaces import (
    ILauncher,
    ILocalProcess,
    IWatchdog,
    LineSink,
    ListenSocket,
)
from turberfield_twisted.launch.ports import port_in_use
from turberfield_twisted.launch.protocol import ExitStatus, WorkerProtocol
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.launch.readyfd import ReadyPipe

__all__ = [
    "LocalLauncher",
    "LocalProcess",
    "ProtocolProcess",
    "rlimit_command",
    "socket_argv",
    "socket_fds",
    "spawn_in_session",
    "valid_module_name",
    "worker_argv",
]


def valid_module_name(module: str) -> bool:
    """Whether ``module`` is a dotted module name (no path, no option)."""
    return MODULE.accepts(module)


def worker_argv(python: str, module: str, guid: str, port: int) -> list[str]:
    """The worker command line: ``python -P -m MODULE --guid G --port P``."""
    return [python, "-P", "-m", module, "--guid", guid, "--port", str(port)]


#: Sets ``LISTEN_PID`` to the worker's own pid, then runs it (``sh -c SCRIPT ARGV...``):
#: posix_spawn sets a child's environment before its pid is known.
_LISTEN_PID = 'export LISTEN_PID=$$; exec "$0" "$@"'


def socket_argv(argv: list[str], sockets: Sequence[ListenSocket]) -> list[str]:
    """``argv``, run so that it is handed ``sockets`` with its own pid in ``LISTEN_PID``."""
    return ["/bin/sh", "-c", _LISTEN_PID, *argv] if sockets else argv


def socket_fds(sockets: Sequence[ListenSocket]) -> dict[int, int | str]:
    """
    A worker's ``childFDs``: stdin, stdout, stderr, ``sockets`` from fd 3
    on, then its lifeline and its ready fd.
    """
    fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
    for n, sock in enumerate(sockets):
        fds[LISTEN_FDS_START + n] = sock.fd
    fds[lifeline_fd(len(sockets))] = "w"
    fds[ready_fd(len(sockets))] = "r"
    return fds


def minimal_env(pythonpath: str = "", extra: Mapping[str, str] = {}) -> dict[str, str]:
    """
    A worker's environment: PATH, LANG, PYTHONUNBUFFERED, PYTHONPATH if
    ``pythonpath`` is given, and ``extra``.
    """
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **({"PYTHONPATH": pythonpath} if pythonpath else {}),
        **extra,
    }


#: The ``prlimit(1)`` option of each rlimit a job may have.
_PRLIMIT_OPTIONS = {resource.RLIMIT_NOFILE: "--nofile", resource.RLIMIT_CPU: "--cpu"}


def rlimit_command(prlimit: str, rlimits: Mapping[int, int]) -> list[str]:
    """``prlimit`` (its path) setting ``rlimits`` (soft and hard), ready for a command."""
    return [prlimit, *(f"{_PRLIMIT_OPTIONS[which]}={value}:{value}"
                       for which, value in sorted(rlimits.items())), "--"]


def spawn_in_session(reactor: IReactorProcess, protocol: ProcessProtocol, argv: list[str],
                     setsid: str | None, env: dict[str, str],
                     child_fds: Mapping[int, int | str], module: str,
                     through: Sequence[str] = ()) -> IProcessTransport:
    """
    Spawn ``argv`` for a worker of ``module`` with ``protocol``, leading a
    session of its own through ``setsid(1)`` if given (so that its pid is
    its process group's from the first instruction), and run through the
    command ``through`` (its path first) if given. Raise
    :class:`SpawnFailed` if the system refuses.
    """
    executable = argv[0]
    if setsid:
        executable, argv = setsid, ["setsid", *argv]
    if through:  # it runs the rest by path: the real path of what follows
        argv = [os.path.basename(through[0]), *through[1:], executable, *argv[1:]]
        executable = through[0]
    try:
        transport: IProcessTransport = reactor.spawnProcess(
            protocol, executable, argv, env=env, childFDs=child_fds)
    except OSError as exc:
        raise SpawnFailed(f"could not start {module}: {exc.strerror or exc}") from None
    return transport


class ProtocolProcess:
    """
    What a worker whose :class:`WorkerProtocol` is ``protocol`` shares,
    however it was started: its pid (``_group``, the session it leads)
    until it is reaped, its end, its word that it listens, and signals to
    its process group.
    """

    protocol: WorkerProtocol
    _group: int | None
    #: The daemon's end of its ready fd, if it reads it itself.
    _ready_pipe: ReadyPipe | None = None

    @property
    def pid(self) -> int | None:
        """The worker's pid until it is reaped."""
        return None if self.protocol.status is not None else self._group

    def exited(self) -> Deferred[ExitStatus]:
        """See :meth:`IWorkerProcess.exited`."""
        return self.protocol.exited()

    def listening(self) -> Deferred[str | None]:
        """See :meth:`IWorkerProcess.listening`."""
        return self.protocol.listening()

    @property
    def pings(self) -> int:
        """See :attr:`IWatchdog.pings` (what came on its ready fd is read now)."""
        if self._ready_pipe is not None:
            self._ready_pipe.poll()
        return self.protocol.pings

    def _signal_group(self, sig: int) -> bool:
        """Send ``sig`` to its group; False if there is no such group (yet)."""
        try:
            os.killpg(self._group or 0, sig)
        except ProcessLookupError:
            pass  # gone, group and all
        except PermissionError:
            return False  # not a group leader (yet)
        return True


@implementer(ILocalProcess, IWatchdog)
class LocalProcess(ProtocolProcess):
    """
    A worker spawned on this host: its :class:`WorkerProtocol` and
    transport. ``process_groups`` signals its whole group (it leads one);
    without it only the process itself is signalled (fakes in tests).
    """

    def __init__(self, protocol: WorkerProtocol, transport: IProcessTransport,
                 process_groups: bool = True, ready: ReadyPipe | None = None):
        self.protocol = protocol
        self.transport = transport
        self.process_groups = process_groups
        self._group = protocol.pid or getattr(transport, "pid", None)
        self._ready_pipe = ready
        if ready is not None:
            protocol.exited().addBoth(ready.close_with)

    def signal(self, sig: int) -> None:
        """See :meth:`IWorkerProcess.signal`."""
        if self._group is None:
            return
        if self.process_groups and self._signal_group(sig):
            return
        try:
            self.transport.signalProcess(signal.Signals(sig).name[3:])
        except ProcessExitedAlready:
            pass


_PRINT_PATH = "import json, sys; print(json.dumps(sys.path))"


def _worker_path(python: str, env: Mapping[str, str]) -> list[str]:
    """
    ``sys.path`` as a worker has it: asked of ``python -P`` in the worker's
    environment once (about 20 ms), since the daemon's own path may hold
    what workers don't get (its ``PYTHONPATH``, a test runner's additions).
    """
    try:
        found = subprocess.run([python, "-P", "-c", _PRINT_PATH], env=dict(env),
                               capture_output=True, timeout=30, check=True)
        return [str(p) for p in json.loads(found.stdout)]
    except (OSError, ValueError, subprocess.SubprocessError):
        return [p for p in sys.path if p]  # the best guess left


def _findable(module: str, path: list[str]) -> bool:
    """Whether dotted ``module`` is found on ``path``, without importing anything."""
    search = [p for p in path if p]
    parts = module.split(".")
    for n, part in enumerate(parts):
        try:
            spec = importlib.machinery.PathFinder.find_spec(part, search)
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
        if n < len(parts) - 1:
            if not spec.submodule_search_locations:
                return False
            search = list(spec.submodule_search_locations)
    return True


@implementer(ILauncher)
class LocalLauncher:
    """
    Spawn workers on this host with ``reactor.spawnProcess``, each the
    leader of its own session (through ``setsid(1)`` where it exists, so
    the pid is the process group id from the first instruction), with the
    current interpreter and a minimal environment: ``PATH``, ``LANG``,
    ``PYTHONUNBUFFERED`` and ``PYTHONPATH`` if ``pythonpath`` is given; a
    job's rlimits set through ``prlimit(1)`` before its interpreter starts
    (with ``prlimit(2)`` just after the spawn if ``prlimit`` is None).

    A port is probed with ``in_use(listen_addr, port)`` before it is
    handed out.
    """

    def __init__(
        self,
        reactor: IDaemonReactor,
        python: str = sys.executable,
        pythonpath: str = "",
        setsid: str | None = shutil.which("setsid"),
        process_groups: bool = True,
        in_use: Callable[[str, int], bool] = port_in_use,
        prlimit: str | None = shutil.which("prlimit"),
    ):
        self._reactor, self._in_use = reactor, in_use
        self.python, self.pythonpath, self.setsid = python, pythonpath, setsid
        self.prlimit = prlimit
        self.process_groups = process_groups
        self._path: list[str] | None = None
        #: Modules found on the workers' path: each looked for once (until a reload).
        self._found: set[str] = set()
        self.env = minimal_env(pythonpath)

    def prepare(self, modules: Iterable[str] = ()) -> None:
        """
        Ask the interpreter for the workers' path now, at start, so that no
        :meth:`check` waits on it in the reactor's thread (``modules``: any).
        """
        self._path = _worker_path(self.python, self.env)

    def reload(self, modules: Iterable[str] = ()) -> None:
        """
        See :meth:`ILauncher.reload`: the modules found are looked for again
        (the workers' path itself depends on ``pythonpath``, which takes a
        restart of the daemon).
        """
        self._found.clear()

    def close(self) -> Deferred[None]:
        """See :meth:`ILauncher.close`: a cold launcher holds nothing open."""
        return succeed(None)

    def check(self, module: str) -> None:
        """
        See :meth:`ILauncher.check`: the module is found where its worker will
        look: ``pythonpath``, then the interpreter's own path (not the
        daemon's ``PYTHONPATH`` or working directory, which workers don't
        get). Nothing is imported. A module found is not looked for again
        until a reload (a hundred jobs of one module: one look).
        """
        if module in self._found:
            return
        if not valid_module_name(module):
            raise UnknownModule(module, "not a dotted module name")
        if self._path is None:  # not prepared: ask now
            self.prepare()
        assert self._path is not None
        if not _findable(module, self._path):
            raise UnknownModule(module, "not found on the workers' path (their pythonpath"
                                        " key and the interpreter's own; not PYTHONPATH)")
        self._found.add(module)

    def port_in_use(self, module: str, listen_addr: str, port: int) -> bool:
        """See :meth:`ILauncher.port_in_use`: a bind probe on ``listen_addr``."""
        return self._in_use(listen_addr, port)

    def address(self, module: str, listen_addr: str) -> str:
        """See :meth:`ILauncher.address`."""
        return reachable(listen_addr)

    def spawn(
        self, module: str, guid: str, port: int, config: bytes, on_line: LineSink,
        limits: Limits | None = None, sockets: Sequence[ListenSocket] = (),
    ) -> LocalProcess:
        """
        See :meth:`ILauncher.spawn`: fd 3 of the worker is its lifeline, fd
        4 the pipe where it says it listens; with ``sockets``, those are
        fds 3 on and the lifeline and ready fd follow (run through ``sh``,
        which sets ``LISTEN_PID`` to its pid and execs the worker);
        ``limits``' rlimits are its own before its interpreter starts (see
        the class).
        """
        rlimits = limits.rlimits() if limits is not None else {}
        through = rlimit_command(self.prlimit, rlimits) if rlimits and self.prlimit else ()
        protocol = WorkerProtocol(guid, config, on_line, reactor=self._reactor,
                                  ready_fd=ready_fd(len(sockets)))
        env = {**self.env, **socket_env([sock.name for sock in sockets])} if sockets else self.env
        argv = socket_argv(worker_argv(self.python, module, guid, port), sockets)
        fds, at = socket_fds(sockets), ready_fd(len(sockets))
        ours, fds[at] = os.pipe()  # its ready fd: read as readyfd says
        try:
            transport = spawn_in_session(self._reactor, protocol, argv, self.setsid, env,
                                         fds, module, through)
        except BaseException:
            os.close(ours)
            raise
        finally:
            os.close(fds[at])  # type: ignore[arg-type]
        ready = ReadyPipe(self._reactor, ours, lambda data: protocol.childDataReceived(at, data))
        process = LocalProcess(protocol, transport, self.process_groups, ready)
        if rlimits and not through:
            _set_rlimits(transport, rlimits, module)
        return process

    def renew(self, module: str) -> Deferred[None]:
        """See :meth:`ILauncher.renew`: a cold worker imports its code as it starts."""
        return succeed(None)


def _set_rlimits(transport: IProcessTransport, rlimits: Mapping[int, int], module: str) -> None:
    """Set ``rlimits`` on a just-spawned process; if one can't be, kill it: SpawnFailed."""
    for which, value in rlimits.items():
        try:
            resource.prlimit(transport.pid, which, (value, value))
        except (OSError, ValueError) as exc:
            name = "max_open_files" if which == resource.RLIMIT_NOFILE else "max_cpu_seconds"
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            try:
                transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass
            raise SpawnFailed(f"could not start {module}: could not set its {name}"
                              f" ({reason})") from None
