"""
A worker forked by a warm template, as the daemon sees it: a
:class:`WarmProcess` is an
:class:`~turberfield_twisted.launch.interfaces.ILocalProcess` whose
:class:`~turberfield_twisted.launch.protocol.WorkerProtocol` reads and writes the daemon's ends of
the worker's pipes (the template was handed the other ends), whose pid
comes from the template once it has forked, and whose exit the template
reports, or a pidfd shows if the template is gone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.process import ProcessReader, ProcessWriter
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from turberfield_twisted.contract import READY_FD
from turberfield_twisted.launch.interfaces import ILocalProcess, IWatchdog, LineSink
from turberfield_twisted.launch.local import ProtocolProcess
from turberfield_twisted.launch.protocol import ExitStatus, WorkerProtocol
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.launch.readyfd import ReadyPipe

__all__ = ["Reader", "WarmProcess"]

_T = TypeVar("_T")


@implementer(IReadDescriptor)
class Reader:
    """Call ``read()`` when ``fd`` is readable, ``lost()`` once, when it is done."""

    def __init__(self, fd: int, read: Callable[[], bool], lost: Callable[[], None]):
        self.fd = fd
        self._read = read
        self._lost = lost

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> Any:  # as Twisted's own: an exception (not the Failure it declares)
        return None if self._read() else ConnectionDone()

    def connectionLost(self, reason: Failure) -> None:
        self._lost()

    def logPrefix(self) -> str:
        return "warm"


@implementer(ILocalProcess, IWatchdog)
class WarmProcess(ProtocolProcess):
    """
    A worker forked by a template: its :class:`WorkerProtocol` sees it as
    a spawned process (config to stdin, output lines, ready fd, exit).
    ``pid`` is known once the template has forked it.
    """

    log = Logger()

    def __init__(self, reactor: IDaemonReactor, guid: str, config: bytes, on_line: LineSink,
                 ready_fd: int = READY_FD):
        self._reactor = reactor
        self._ready_fd = ready_fd
        self.protocol = WorkerProtocol(guid, config, on_line, reactor=reactor, ready_fd=ready_fd)
        self._group: int | None = None
        self._pending: list[int] = []
        self._pipes: dict[int, ProcessReader | ProcessWriter] = {}
        self._watch: Reader | None = None

    # -- what the protocol's transport needs -----------------------------

    def attach(self, stdin: int, stdout: int, stderr: int, ready: int) -> None:
        """Read and write the daemon's ends of the worker's pipes; write its config."""
        # Twisted's own pipe ends of a spawned process (twisted.internet.process,
        # documented as "use reactor.spawnProcess() instead"): no public API takes
        # pipes that another process (the template) made the child with. Checked on
        # Twisted 26.10.0; used here only.
        self._pipes = {
            0: ProcessWriter(self._reactor, self, 0, stdin),
            1: ProcessReader(self._reactor, self, 1, stdout),
            2: ProcessReader(self._reactor, self, 2, stderr),
        }
        at = self._ready_fd
        pipe = self._ready_pipe = ReadyPipe(
            self._reactor, ready, lambda data: self.protocol.childDataReceived(at, data))
        self.protocol.exited().addBoth(pipe.close_with)  # which lets go of its feed
        self.protocol.exited().addBoth(self._let_go)
        self.protocol.makeConnection(self)

    def _let_go(self, result: _T) -> _T:
        """
        Its exit is reported: its protocol lets go of it (this is the
        protocol's transport, as Twisted's Process lets go of its protocol
        once it has ended), so that an ended job's worker is freed when the
        job is, not by the garbage collector's next full pass.
        """
        self.protocol.transport = None
        return result

    def write(self, data: bytes) -> None:
        self._pipes[0].write(data)

    def closeStdin(self) -> None:
        self._pipes[0].loseConnection()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        self.protocol.childDataReceived(fd, data)

    def childConnectionLost(self, fd: int, reason: Failure | None = None) -> None:
        pipe = self._pipes.pop(fd, None)
        if pipe is not None:
            os.close(pipe.fileno())
        self.protocol.childConnectionLost(fd)

    # -- IWorkerProcess (pid, exited and listening are ProtocolProcess's) ---

    def forked(self, pid: int) -> None:
        """The template forked it as ``pid``: send it what was asked meanwhile."""
        self._group = pid
        pending, self._pending = self._pending, []
        for sig in pending:
            self.signal(sig)

    def ended(self, status: ExitStatus) -> None:
        """
        It was reaped (or is gone, ``status`` unknown): tell the protocol,
        which reports its exit once its stdout and stderr have closed (or
        after their grace), as for a cold worker.
        """
        if self._watch is not None:
            self._reactor.removeReader(self._watch)
            os.close(self._watch.fd)
            self._watch = None
        self.protocol.processExited(status.as_reason())

    def orphaned(self) -> None:
        """Its template is gone: learn of its end through a pidfd (its status is lost)."""
        if self._group is None or self.protocol.status is not None:
            self.ended(ExitStatus(None, None))
            return
        try:
            fd = os.pidfd_open(self._group)
        except OSError:
            self.ended(ExitStatus(None, None))
            return
        self._watch = Reader(fd, self._gone, lambda: None)
        self._reactor.addReader(self._watch)

    def _gone(self) -> bool:
        """Its pidfd is readable: it has ended."""
        self.ended(ExitStatus(None, None))
        return True

    def signal(self, sig: int) -> None:
        """See :meth:`IWorkerProcess.signal`: its session's group, once it has a pid."""
        if self._group is None:
            self._pending.append(sig)
        elif not self._signal_group(sig):
            try:
                os.kill(self._group, sig)
            except ProcessLookupError:
                pass
