"""
Workers on a Slurm cluster: each job of a module whose section says
``launcher = slurm`` runs as a Slurm job step::

    python -P -m turberfield_twisted.launch.slurm.guard \\
        srun --ntasks=1 --job-name=GUID [slurm_args] python -P -m MODULE --guid G --port P

``srun`` forwards its stdin to the task, so the config still travels on
stdin; the task's output comes back through ``srun``, and ``srun`` exits
as the task did. The daemon can't probe a port on a node, so the port is
not probed (a worker that can't bind it exits 75 and gets the next); the
worker says where it listens (``POST /jobs/{guid}/listening``, with its
node's address and its step, ``JOBID.STEP``), and its process
(:class:`SlurmProcess`) passes that on.

A stop is ``scancel --signal=TERM JOBID.STEP`` (the task stops as a
local worker does on SIGTERM); SIGKILL after ``stop_timeout`` is
``scancel JOBID.STEP``. Before the worker has said which step it is, both
are SIGTERM to the guard, whose ``srun`` then cancels what it has. The
guard (:mod:`.guard`) holds the lifeline: a daemon that dies,
however, leaves no Slurm job behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.contract import LIFELINE_FD
from turberfield_twisted.errors import SpawnFailed, UnknownModule
from turberfield_twisted.launch.interfaces import (
    ILauncher,
    IRemoteProcess,
    LineSink,
    ListenSocket,
)
from turberfield_twisted.launch.local import (
    ProtocolProcess,
    minimal_env,
    spawn_in_session,
    valid_module_name,
    worker_argv,
)
from turberfield_twisted.launch.protocol import Once, WorkerProtocol
from turberfield_twisted.launch.reactor import IDaemonReactor

__all__ = ["CommandRunner", "SlurmLauncher", "SlurmProcess", "run_command", "srun_argv"]

#: ``run(argv)`` runs a command; fires with its exit code (None: a signal) and stderr.
CommandRunner = Callable[[list[str]], Deferred[tuple[int | None, str]]]


def srun_argv(srun: str, guid: str, slurm_args: tuple[str, ...], task: list[str]) -> list[str]:
    """``srun`` running ``task`` as one task of a job named ``guid``, with ``slurm_args``."""
    return [srun, "--ntasks=1", f"--job-name={guid}", *slurm_args, *task]


def run_command(reactor: IReactorProcess, env: dict[str, str]) -> CommandRunner:
    """A :data:`CommandRunner` that spawns each command on ``reactor`` with ``env``."""
    from twisted.internet.utils import getProcessOutputAndValue

    def run(argv: list[str]) -> Deferred[tuple[int | None, str]]:
        def done(result: tuple[bytes, bytes, int]) -> tuple[int | None, str]:
            return result[2], result[1].decode("utf-8", "replace")

        def killed(failure: Failure) -> tuple[int | None, str]:
            if isinstance(failure.value, tuple):  # (out, err, signal)
                return None, failure.value[1].decode("utf-8", "replace")
            return None, failure.getErrorMessage()

        d = getProcessOutputAndValue(argv[0], argv[1:], env=env, reactor=reactor)
        return d.addCallbacks(done, killed)

    return run


@implementer(IRemoteProcess)
class SlurmProcess(ProtocolProcess):
    """
    A worker that Slurm runs, as the daemon sees it: its guard's
    :class:`WorkerProtocol` (config to stdin, output, exit), the host and
    step its worker says it runs at (:meth:`located`), and signals turned
    into ``scancel`` (through ``run``) or, before the step is known,
    SIGTERM to the guard.
    """

    log = Logger()

    def __init__(self, protocol: WorkerProtocol, transport: IProcessTransport,
                 scancel: str, run: CommandRunner):
        self.protocol = protocol
        self.transport = transport
        self._group = protocol.pid or getattr(transport, "pid", None)
        self.scancel = scancel
        self.run = run
        #: ``JOBID.STEP``, once the worker has said so.
        self.step: str | None = None
        self._where = Once[str | None]()

    def listening(self) -> Deferred[str | None]:
        """See :meth:`IWorkerProcess.listening`: fires with the host the worker reported."""
        return self._where.wait()

    def located(self, host: str, port: int, step: str | None) -> None:
        """See :meth:`IRemoteProcess.located`."""
        if self._where.fired:
            return
        self.step = step
        self.log.info("job {guid} runs as Slurm step {step} on {host}",
                      guid=self.protocol.guid, step=step, host=host)
        self._where.fire(host)

    def signal(self, sig: int) -> None:
        """
        See :meth:`IWorkerProcess.signal`: ``scancel --signal=NAME STEP``,
        or ``scancel STEP`` for SIGKILL; SIGTERM to the guard (its ``srun``
        cancels the step) if the step is not known yet, or ``scancel``
        failed. Nothing once ``srun`` has ended: its step ended first.
        """
        if self.protocol.status is not None:
            return
        if self.step is None:
            if sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
                self._to_guard()
            return
        name = signal.Signals(sig).name[3:]
        args = [] if sig == signal.SIGKILL else [f"--signal={name}"]
        argv = [self.scancel, *args, self.step]
        self.log.info("job {guid}: scancel {args}", guid=self.protocol.guid,
                      args=" ".join(argv[1:]))
        self.run(argv).addCallback(self._cancelled, name)

    def _cancelled(self, result: tuple[int | None, str], name: str) -> None:
        code, err = result
        if code == 0:
            return
        self.log.warn("job {guid}: scancel ({signal}) of step {step} failed: {why}",
                      guid=self.protocol.guid, signal=name, step=self.step,
                      why=err.strip()[:300] or f"exit {code}")
        if self.protocol.status is None:
            self._to_guard()

    def _to_guard(self) -> None:
        """SIGTERM to the guard: its ``srun`` cancels the step (or the pending job)."""
        if self.protocol.status is not None:
            return
        try:
            self.transport.signalProcess("TERM")
        except ProcessExitedAlready:
            pass


@implementer(ILauncher)
class SlurmLauncher:
    """
    Run workers as Slurm job steps with ``srun`` (found on ``PATH``),
    through :mod:`.guard`, in a session of their own (``setsid``),
    with the environment a local worker gets plus the daemon's
    ``SLURM_CONF`` (``srun`` passes it on to the task). ``slurm_args(module)``
    gives a module's extra ``srun`` options; ``run`` runs ``scancel``.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IDaemonReactor,
        slurm_args: Callable[[str], tuple[str, ...]] = lambda module: (),
        python: str = sys.executable,
        pythonpath: str = "",
        srun: str | None = shutil.which("srun"),
        scancel: str | None = shutil.which("scancel"),
        setsid: str | None = shutil.which("setsid"),
        run: CommandRunner | None = None,
    ):
        self._reactor, self.slurm_args, self.python = reactor, slurm_args, python
        self.srun, self.scancel, self.setsid = srun, scancel, setsid
        conf = {"SLURM_CONF": os.environ["SLURM_CONF"]} if "SLURM_CONF" in os.environ else {}
        self.env = minimal_env(pythonpath, conf)
        self.run = run if run is not None else run_command(reactor, self.env)

    def check(self, module: str) -> None:
        """
        See :meth:`ILauncher.check`: a dotted name, and ``srun`` and
        ``scancel`` here. The module itself is looked for on the node.
        """
        if not valid_module_name(module):
            raise UnknownModule(module, "not a dotted module name")
        if self.srun is None or self.scancel is None:
            raise UnknownModule(module, "its launcher is slurm, and srun or scancel is not on"
                                        " the daemon's PATH")

    def port_in_use(self, module: str, listen_addr: str, port: int) -> bool:
        """
        See :meth:`ILauncher.port_in_use`: not known here (it is bound on a
        node; a worker that can't bind it exits 75 and gets the next).
        """
        return False

    def address(self, module: str, listen_addr: str) -> None:
        """See :meth:`ILauncher.address`: the worker says where it runs."""
        return None

    def spawn(self, module: str, guid: str, port: int, config: bytes,
              on_line: LineSink, limits: Limits | None = None,
              sockets: Sequence[ListenSocket] = ()) -> SlurmProcess:
        """
        See :meth:`ILauncher.spawn`: the guard holds the lifeline; srun has no
        fd 4. ``limits``' rlimits are not set on a Slurm task (Slurm's own
        limits apply there), and no socket of this host reaches a node
        (SpawnFailed).
        """
        if sockets:
            raise SpawnFailed(f"could not start {module}: a worker on a Slurm node can't be"
                              " handed a listening socket of this host")
        if self.srun is None or self.scancel is None:
            raise SpawnFailed(f"could not start {module}: srun or scancel is not on the PATH")
        protocol = WorkerProtocol(guid, config, on_line, reactor=self._reactor)
        task = worker_argv(self.python, module, guid, port)
        argv = [self.python, "-P", "-m", "turberfield_twisted.launch.slurm.guard",
                *srun_argv(self.srun, guid, self.slurm_args(module), task)]
        transport = spawn_in_session(self._reactor, protocol, argv, self.setsid, self.env,
                                     {0: "w", 1: "r", 2: "r", LIFELINE_FD: "w"}, module)
        return SlurmProcess(protocol, transport, self.scancel, self.run)

    def renew(self, module: str) -> Deferred[None]:
        """See :meth:`ILauncher.renew`: each step imports its code on its node."""
        return succeed(None)

    def prepare(self, modules: list[str]) -> None:
        """See :meth:`ILauncher.prepare`: nothing to do (the node imports the module)."""

    def reload(self, modules: list[str]) -> None:
        """See :meth:`ILauncher.reload`: nothing is kept between jobs."""

    def close(self) -> Deferred[None]:
        """See :meth:`ILauncher.close`: each job step ends with its job."""
        return succeed(None)
