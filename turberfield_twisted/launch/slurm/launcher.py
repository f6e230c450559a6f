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
(:class:`SlurmProcess`) passes that on once Slurm agrees (the step is the
job's and the address its node's: :mod:`.placement`); a report it does not
agree with is refused and the job is never reached there.

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

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.contract import LIFELINE_FD
from turberfield_twisted.errors import PlacementRefused, SpawnFailed, UnknownModule
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
from turberfield_twisted.launch.slurm.placement import (
    CommandRunner,
    Ran,
    Resolver,
    check_place,
    resolver,
)

__all__ = ["CommandRunner", "SlurmLauncher", "SlurmProcess", "run_command", "srun_argv"]


def srun_argv(srun: str, guid: str, slurm_args: tuple[str, ...], task: list[str]) -> list[str]:
    """``srun`` running ``task`` as one task of a job named ``guid``, with ``slurm_args``."""
    return [srun, "--ntasks=1", f"--job-name={guid}", *slurm_args, *task]


def run_command(reactor: IReactorProcess, env: dict[str, str]) -> CommandRunner:
    """A :data:`CommandRunner` that spawns each command on ``reactor`` with ``env``."""
    from twisted.internet.utils import getProcessOutputAndValue

    def run(argv: list[str]) -> Deferred[Ran]:
        def done(result: tuple[bytes, bytes, int]) -> Ran:
            out, err, code = result
            return Ran(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

        def killed(failure: Failure) -> Ran:
            if isinstance(failure.value, tuple):  # (out, err, signal)
                out, err = failure.value[0], failure.value[1]
                return Ran(None, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
            return Ran(None, "", failure.getErrorMessage())

        d = getProcessOutputAndValue(argv[0], argv[1:], env=env, reactor=reactor)
        return d.addCallbacks(done, killed)

    return run


@implementer(IRemoteProcess)
class SlurmProcess(ProtocolProcess):
    """
    A worker that Slurm runs, as the daemon sees it: its guard's
    :class:`WorkerProtocol` (config to stdin, output, exit), the host and
    step its worker says it runs at (:meth:`located`, once ``squeue``
    through ``run`` and ``resolve`` agree), and signals turned into
    ``scancel`` (through ``run``) or, before the step is known, SIGTERM to
    the guard.
    """

    log = Logger()

    def __init__(self, protocol: WorkerProtocol, transport: IProcessTransport,
                 scancel: str, run: CommandRunner, squeue: str, resolve: Resolver):
        self.protocol = protocol
        self.transport = transport
        self._group = protocol.pid or getattr(transport, "pid", None)
        self.scancel = scancel
        self.run = run
        self.squeue = squeue
        self.resolve = resolve
        #: ``JOBID.STEP``, once the worker has said so and Slurm agreed.
        self.step: str | None = None
        self._where = Once[str | None]()
        self._checking = False

    def listening(self) -> Deferred[str | None]:
        """See :meth:`IWorkerProcess.listening`: fires with the host the worker reported."""
        return self._where.wait()

    def located(self, host: str, port: int, step: str | None) -> Deferred[None]:
        """
        See :meth:`IRemoteProcess.located`: believed only if Slurm runs
        ``step`` for this job on a node whose name resolves to ``host``;
        else :class:`PlacementRefused` (logged with the guid).
        """
        if self._where.fired:
            return succeed(None)
        if self._checking:
            return fail(PlacementRefused(f"job {self.protocol.guid}: a report of where it"
                                         " listens is being checked already"))
        self._checking = True
        checked = Deferred.fromCoroutine(check_place(self.run, self.squeue, self.resolve,
                                                     self.protocol.guid, host, step))
        return checked.addBoth(self._checked, host, step)

    def _checked(self, node: str | Failure, host: str, step: str | None) -> None:
        self._checking = False
        if isinstance(node, Failure):
            self.log.warn("job {guid}: its report of where it listens is refused: {why}",
                          guid=self.protocol.guid, why=node.getErrorMessage())
            node.raiseException()
        if self._where.fired or self.protocol.status is not None:
            return
        self.step = step
        self.log.info("job {guid} runs as Slurm step {step} on {host} ({node})",
                      guid=self.protocol.guid, step=step, host=host, node=node)
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

    def _cancelled(self, result: Ran, name: str) -> None:
        if result.code == 0:
            return
        self.log.warn("job {guid}: scancel ({signal}) of step {step} failed: {why}",
                      guid=self.protocol.guid, signal=name, step=self.step,
                      why=result.err.strip()[:300] or f"exit {result.code}")
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
    gives a module's extra ``srun`` options; ``run`` runs ``scancel`` and
    ``squeue``; ``resolve`` resolves a node's name (default: ``getaddrinfo``
    in the reactor's thread pool).
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
        squeue: str | None = shutil.which("squeue"),
        resolve: Resolver | None = None,
    ):
        self._reactor, self.slurm_args, self.python = reactor, slurm_args, python
        self.srun, self.scancel, self.setsid, self.squeue = srun, scancel, setsid, squeue
        conf = {"SLURM_CONF": os.environ["SLURM_CONF"]} if "SLURM_CONF" in os.environ else {}
        self.env = minimal_env(pythonpath, conf)
        self.run = run if run is not None else run_command(reactor, self.env)
        self.resolve = resolve if resolve is not None else resolver(reactor)

    def check(self, module: str) -> None:
        """
        See :meth:`ILauncher.check`: a dotted name, and ``srun``,
        ``scancel`` and ``squeue`` here. The module itself is looked for on
        the node.
        """
        if not valid_module_name(module):
            raise UnknownModule(module, "not a dotted module name")
        if self.srun is None or self.scancel is None or self.squeue is None:
            raise UnknownModule(module, "its launcher is slurm, and srun, scancel or squeue is"
                                        " not on the daemon's PATH")

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
        if self.srun is None or self.scancel is None or self.squeue is None:
            raise SpawnFailed(f"could not start {module}: srun, scancel or squeue is not on"
                              " the PATH")
        protocol = WorkerProtocol(guid, config, on_line, reactor=self._reactor)
        task = worker_argv(self.python, module, guid, port)
        argv = [self.python, "-P", "-m", "turberfield_twisted.launch.slurm.guard",
                *srun_argv(self.srun, guid, self.slurm_args(module), task)]
        transport = spawn_in_session(self._reactor, protocol, argv, self.setsid, self.env,
                                     {0: "w", 1: "r", 2: "r", LIFELINE_FD: "w"}, module)
        return SlurmProcess(protocol, transport, self.scancel, self.run, self.squeue,
                            self.resolve)

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
