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
import sys
from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorProcess
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.contract import LIFELINE_FD
from turberfield_twisted.errors import SpawnFailed, UnknownModule
from turberfield_twisted.launch.interfaces import ILauncher, LineSink, ListenSocket
from turberfield_twisted.launch.local import (
    minimal_env,
    spawn_in_session,
    valid_module_name,
    worker_argv,
)
from turberfield_twisted.launch.protocol import WorkerProtocol
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.launch.slurm.nodes import NodeBook, merge_options
from turberfield_twisted.launch.slurm.placement import CommandRunner, Ran, Resolver, resolver
from turberfield_twisted.launch.slurm.process import SlurmCommands, SlurmProcess
from turberfield_twisted.launch.slurm.spread import Spread

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


@implementer(ILauncher)
class SlurmLauncher:
    """
    Run workers as Slurm job steps with ``srun`` (found on ``PATH``),
    through :mod:`.guard`, in a session of their own (``setsid``),
    with the environment a local worker gets plus the daemon's
    ``SLURM_CONF`` (``srun`` passes it on to the task). ``slurm_args(module)``
    gives a module's extra ``srun`` options; ``run`` runs ``scancel``,
    ``squeue`` and ``scontrol``; ``resolve`` resolves a node's address if
    it is a name (default: ``getaddrinfo`` in the reactor's thread pool).
    ``nodes`` keeps the nodes excluded after failures (a new book with the
    default policy if not given); ``spread`` chooses the node of each
    instance of a service that spreads over nodes (:mod:`.spread`; it asks
    ``sinfo`` which nodes are usable).
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
        scontrol: str | None = shutil.which("scontrol"),
        nodes: NodeBook | None = None,
        spread: Spread | None = None,
        sinfo: str | None = shutil.which("sinfo"),
    ):
        self._reactor, self.slurm_args, self.python = reactor, slurm_args, python
        self.srun, self.scancel, self.setsid, self.squeue = srun, scancel, setsid, squeue
        self.scontrol = scontrol
        conf = {"SLURM_CONF": os.environ["SLURM_CONF"]} if "SLURM_CONF" in os.environ else {}
        self.env = minimal_env(pythonpath, conf)
        self.run = run if run is not None else run_command(reactor, self.env)
        self.resolve = resolve if resolve is not None else resolver(reactor)
        self.nodes = nodes if nodes is not None else NodeBook(
            reactor.seconds, lambda: (3, 600.0, 600.0))
        self.spread = spread if spread is not None else Spread()
        self.sinfo = sinfo

    def check(self, module: str) -> None:
        """
        See :meth:`ILauncher.check`: a dotted name, and ``srun``,
        ``scancel`` and ``squeue`` here. The module itself is looked for on
        the node.
        """
        if not valid_module_name(module):
            raise UnknownModule(module, "not a dotted module name")
        if None in (self.srun, self.scancel, self.squeue, self.scontrol):
            raise UnknownModule(module, "its launcher is slurm, and srun, scancel, squeue or"
                                        " scontrol is not on the daemon's PATH")

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
        if (self.srun is None or self.scancel is None or self.squeue is None
                or self.scontrol is None):
            raise SpawnFailed(f"could not start {module}: srun, scancel, squeue or scontrol is"
                              " not on the PATH")
        protocol = WorkerProtocol(guid, config, lambda stream, text: sink(stream, text),
                                  reactor=self._reactor)
        task = worker_argv(self.python, module, guid, port)
        args = merge_options(self.slurm_args(module), self.excluded(guid))
        node = self._spread_to(guid, args)
        if node is not None:
            args = (*args, f"--nodelist={node}")
        argv = [self.python, "-P", "-m", "turberfield_twisted.launch.slurm.guard",
                *srun_argv(self.srun, guid, args, task)]
        transport = spawn_in_session(self._reactor, protocol, argv, self.setsid, self.env,
                                     {0: "w", 1: "r", 2: "r", LIFELINE_FD: "w"}, module)
        commands = SlurmCommands(self.scancel, self.squeue, self.scontrol, self.run,
                                 self.resolve)
        process = SlurmProcess(protocol, transport, commands, self.nodes, self._reactor)
        sink = process.sink(on_line)
        process.listening().addCallback(lambda _: self.spread.placed(guid, process.node))
        process.exited().addCallback(lambda _: self.spread.ended(guid, process.node or node))
        return process

    def _spread_to(self, guid: str, args: tuple[str, ...]) -> str | None:
        """The node job ``guid``'s step is sent to, if it spreads (see :mod:`.spread`)."""
        excluded = [n for a in args if a.startswith("--exclude=") for n in a[10:].split(",")]
        node = self.spread.node_for(guid, excluded, args)
        if self.sinfo is not None and self.spread.siblings(guid) is not None:
            self.spread.refresh(self.run, self.sinfo)  # for the next step
        return node

    def excluded(self, guid: str) -> list[str]:
        """
        The nodes job ``guid``'s next step must not run on (``srun
        --exclude``): those that failed it, or failed too often
        (:class:`.nodes.NodeBook`).
        """
        excluded = self.nodes.excluded(guid)
        if excluded:
            self.log.info("job {guid}: its step avoids {nodes}", guid=guid,
                          nodes=",".join(excluded))
        return excluded

    def prepare(self, modules: list[str]) -> None:
        """
        See :meth:`ILauncher.prepare`: ask ``sinfo`` which nodes are usable
        (for :mod:`.spread`); the node imports the module.
        """
        if self.sinfo is not None:
            self.spread.refresh(self.run, self.sinfo)

    def renew(self, module: str) -> Deferred[None]:
        """See :meth:`ILauncher.renew`: each step imports its code on its node."""
        return succeed(None)

    def reload(self, modules: list[str]) -> None:
        """See :meth:`ILauncher.reload`: nothing is kept between jobs."""

    def close(self) -> Deferred[None]:
        """See :meth:`ILauncher.close`: each job step ends with its job."""
        return succeed(None)
