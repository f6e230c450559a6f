"""
Fakes for unit tests of timing and bookkeeping: a Clock-driven reactor
whose ``spawnProcess`` records each call and hands back a transport that
records writes and signals, and a launcher on top of it. No process is
ever started.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import attrs
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyClass

__all__ = ["FakeProcess", "FakeProcessReactor"]

_pids = itertools.count(100001)


@implementer(IProcessTransport)
@attrs.define(eq=False)
class FakeProcess:
    """A process transport that records what the protocol does to it."""

    protocol: Any
    executable: str
    args: list[str]
    env: dict[str, str]
    pid: int | None = attrs.field(factory=lambda: next(_pids))
    written: list[bytes] = attrs.field(factory=list, repr=False)
    stdin_closed: bool = False
    signals: list[str] = attrs.field(factory=list)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.written.extend(data)

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def closeStdout(self) -> None:
        pass

    def closeStderr(self) -> None:
        pass

    def closeChildFD(self, descriptor: int) -> None:
        pass

    def writeToChild(self, childFD: int, data: bytes) -> None:
        self.written.append(data)

    def loseConnection(self) -> None:
        pass

    def signalProcess(self, signalID: str | int) -> None:
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(str(signalID))

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None

    def exit(self, code: int = 0, signal: int | None = None) -> None:
        """End the fake process: the protocol sees it exit."""
        reason = (
            Failure(ProcessDone(0))
            if code == 0 and signal is None
            else Failure(ProcessTerminated(code if signal is None else None, signal))
        )
        self.pid = None
        self.protocol.processExited(reason)
        self.protocol.processEnded(reason)


@implementer(IReactorProcess)
class FakeProcessReactor(MemoryReactor, Clock):
    """MemoryReactor + Clock, recording ``spawnProcess`` calls in ``spawned``."""

    def __init__(self) -> None:
        MemoryReactor.__init__(self)
        Clock.__init__(self)
        self.spawned: list[FakeProcess] = []
        self.fail_spawn: OSError | None = None

    def spawnProcess(self, processProtocol: Any, executable: Any, args: Any = (), env: Any = None,
                     path: Any = None, uid: Any = None, gid: Any = None, usePTY: bool = False,
                     childFDs: Any = None) -> FakeProcess:
        if self.fail_spawn is not None:
            raise self.fail_spawn
        proc = FakeProcess(processProtocol, executable, list(args), dict(env or {}))
        self.spawned.append(proc)
        processProtocol.makeConnection(proc)
        return proc


verifyClass(IReactorProcess, FakeProcessReactor)
verifyClass(IProcessTransport, FakeProcess)

