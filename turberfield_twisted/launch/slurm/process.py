"""
A worker that Slurm runs, as the daemon sees it: :class:`SlurmProcess`.

Where it runs is asked of Slurm (:func:`.placement.check_place`): the
worker's report is believed only if its step is the running Slurm job of
its guid, not one the daemon fenced, on a node whose ``NodeAddr`` is the
address reported; the daemon then reaches it at that address only.

A node that fails under its step (``srun`` says ``Node failure on NODE``:
Slurm found the node dead or cut off) loses the run: before its end is
told to the lifecycle (which starts it again), the old Slurm job is
cancelled (fenced: ``scancel JOBID``, or ``scancel --name=GUID`` if its
step was never known), so that no second copy survives a partition once
the link comes back, and the node is excluded for that job (and for all
jobs once it has failed often enough: :class:`.nodes.NodeBook`). Its exit
then counts as a failure, ``last_error`` saying which node failed.
"""

from __future__ import annotations

import re
import signal

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from turberfield_twisted.errors import PlacementRefused
from turberfield_twisted.launch.interfaces import IRemoteProcess, LineSink
from turberfield_twisted.launch.local import ProtocolProcess
from turberfield_twisted.launch.protocol import ExitStatus, Once, WorkerProtocol
from turberfield_twisted.launch.slurm.nodes import NodeBook
from turberfield_twisted.launch.slurm.placement import (
    CommandRunner,
    Place,
    Ran,
    Resolver,
    check_place,
)

__all__ = ["FENCE_TIMEOUT", "NODE_FAILURE", "SlurmCommands", "SlurmProcess"]

#: What ``srun`` writes when Slurm declares the node of its step failed.
NODE_FAILURE = re.compile(r"^srun: error: Node failure on (?P<node>[A-Za-z0-9._-]+)")
#: Seconds a fence (``scancel``) may take before the restart goes on without it.
FENCE_TIMEOUT = 10.0


@attrs.frozen
class SlurmCommands:
    """How the daemon asks Slurm: the programs, ``run`` (runs one) and ``resolve``."""

    scancel: str
    squeue: str
    scontrol: str
    run: CommandRunner
    resolve: Resolver


@implementer(IRemoteProcess)
class SlurmProcess(ProtocolProcess):
    """
    A worker that Slurm runs: its guard's :class:`WorkerProtocol` (config
    to stdin, output, exit), the node and step it runs at (:meth:`located`,
    once Slurm agrees), signals turned into ``scancel`` (or, before the
    step is known, SIGTERM to the guard), and a node failure turned into a
    fence, an exclusion and a failed exit (:meth:`exited`).
    """

    log = Logger()

    def __init__(self, protocol: WorkerProtocol, transport: IProcessTransport,
                 slurm: SlurmCommands, book: NodeBook, reactor: IReactorTime):
        self.protocol = protocol
        self.transport = transport
        self._group = protocol.pid or getattr(transport, "pid", None)
        self.slurm = slurm
        self.book = book
        self._reactor = reactor
        #: ``JOBID.STEP``, once the worker has said so and Slurm agreed.
        self.step: str | None = None
        #: The node Slurm runs it on, once known; the one that failed, if it did.
        self.node: str | None = None
        self.lost: str | None = None
        self._where = Once[str | None]()
        self._end = Once[ExitStatus]()
        self._checking = False
        protocol.exited().addCallback(self._ended)

    @property
    def scancel(self) -> str:
        """The ``scancel`` it runs."""
        return self.slurm.scancel

    def sink(self, on_line: LineSink) -> LineSink:
        """``on_line``, watching the guard's stderr for ``srun``'s word of a node failure."""

        def line(stream: str, text: str) -> None:
            found = NODE_FAILURE.match(text) if stream == "stderr" else None
            if found is not None and self.lost is None:
                self.node = found.group("node")
                self.lost = f"Slurm node {self.node} failed (srun: {text[6:].strip()})"
            on_line(stream, text)

        return line

    def exited(self) -> Deferred[ExitStatus]:
        """See :meth:`IWorkerProcess.exited`: after the fence, if its node failed."""
        return self._end.wait()

    def _ended(self, status: ExitStatus) -> None:
        guid = self.protocol.guid
        if self.lost is None or self.node is None:
            self._end.fire(status)
            return
        node, lost = self.node, self.lost
        wide = self.book.failed(guid, node, lost)
        self.log.warn("job {guid}: {why}: fencing its Slurm job, then starting it again"
                      " without {node}{wide}", guid=guid, why=lost, node=node,
                      wide=" (now excluded for every job)" if wide else "")
        fenced = self._fence().addTimeout(FENCE_TIMEOUT, self._reactor)
        fenced.addErrback(self._fence_failed)
        fenced.addBoth(lambda _: self._end.fire(ExitStatus(status.code, status.signal, lost)))

    def _fence(self) -> Deferred[Ran]:
        """Cancel the Slurm job of this run (by id, else every one named by the guid)."""
        guid = self.protocol.guid
        if self.step is not None:
            slurm_job = self.step.split(".")[0]
            self.book.fence(guid, slurm_job)
            argv = [self.slurm.scancel, slurm_job]
        else:
            argv = [self.slurm.scancel, f"--name={guid}"]
        self.log.info("job {guid}: fenced: scancel {args}", guid=guid, args=" ".join(argv[1:]))
        return self.slurm.run(argv)

    def _fence_failed(self, failure: Failure) -> None:
        self.log.warn("job {guid}: the fence (scancel) did not answer: {why}",
                      guid=self.protocol.guid, why=failure.getErrorMessage())

    def listening(self) -> Deferred[str | None]:
        """See :meth:`IWorkerProcess.listening`: fires with its node's address, as Slurm says."""
        return self._where.wait()

    def located(self, host: str, port: int, step: str | None) -> Deferred[None]:
        """
        See :meth:`IRemoteProcess.located`: believed only if Slurm runs
        ``step`` (not a fenced one) for this job on a node whose
        ``NodeAddr`` is ``host``; else :class:`PlacementRefused` (logged
        with the guid).
        """
        guid = self.protocol.guid
        if self._where.fired:
            return succeed(None)
        if step is not None and self.book.fenced(guid, step.split(".")[0]):
            self.log.warn("job {guid}: its report of where it listens is refused: Slurm job"
                          " {job} was fenced", guid=guid, job=step.split(".")[0])
            return fail(PlacementRefused(f"Slurm job {step.split('.')[0]} of job {guid} was"
                                         " fenced: it is cancelled"))
        if self._checking:
            return fail(PlacementRefused(f"job {guid}: a report of where it listens is being"
                                         " checked already"))
        self._checking = True
        s = self.slurm
        checked = Deferred.fromCoroutine(check_place(s.run, s.squeue, s.scontrol, s.resolve,
                                                     guid, host, step))
        return checked.addBoth(self._checked, step)

    def _checked(self, place: Place | Failure, step: str | None) -> None:
        self._checking = False
        if isinstance(place, Failure):
            self.log.warn("job {guid}: its report of where it listens is refused: {why}",
                          guid=self.protocol.guid, why=place.getErrorMessage())
            place.raiseException()
        if self._where.fired or self.protocol.status is not None:
            return
        self.step, self.node = step, place.node
        self.log.info("job {guid} runs as Slurm step {step} on {host} ({node})",
                      guid=self.protocol.guid, step=step, host=place.addr, node=place.node)
        self._where.fire(place.addr)

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
        argv = [self.slurm.scancel, *args, self.step]
        self.log.info("job {guid}: scancel {args}", guid=self.protocol.guid,
                      args=" ".join(argv[1:]))
        self.slurm.run(argv).addCallback(self._cancelled, name)

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
