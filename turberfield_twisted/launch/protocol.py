"""
The worker's ProcessProtocol: the config goes to stdin, output lines go to
the log under the job's guid, the exit is a Deferred. Also the line
splitter that keeps a flooding child from hurting the daemon.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IProcessTransport, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from turberfield_twisted.contract import READY_FD, WATCHDOG_LINE

__all__ = [
    "MAX_LINE",
    "OUTPUT_GRACE",
    "ExitStatus",
    "LineSplitter",
    "Once",
    "Outcomes",
    "OutputTail",
    "WorkerProtocol",
]

#: Longest piece of one output line that is logged as one event.
MAX_LINE = 64 * 1024


#: How long a reaped child's stdout and stderr may stay open (held by a
#: grandchild) before its exit is reported anyway.
OUTPUT_GRACE = 0.5


@attrs.frozen
class ExitStatus:
    """
    How a process ended: an exit ``code`` or a ``signal`` (one is None);
    ``lost``: why its run was lost whatever it exited with (its Slurm node
    failed), which makes the exit a failure.
    """

    code: int | None
    signal: int | None
    lost: str | None = None

    @classmethod
    def from_reason(cls, reason: Failure) -> ExitStatus:
        """Read a :class:`ProcessDone`/``ProcessTerminated`` failure."""
        value = reason.value
        if isinstance(value, ProcessDone):
            return cls(0, None)
        if isinstance(value, ProcessTerminated):
            return cls(value.exitCode, value.signal)
        return cls(None, None)

    def as_reason(self) -> Failure:
        """The ``ProcessDone``/``ProcessTerminated`` failure a reactor gives for this exit."""
        if self.code == 0 and self.signal is None:
            return Failure(ProcessDone(0))
        return Failure(ProcessTerminated(self.code, self.signal))

    def describe(self) -> str:
        """'exit 1', 'signal 9' or 'unknown'; after why it was lost, if it was."""
        if self.signal is not None:
            how = f"signal {self.signal}"
        else:
            how = f"exit {self.code}" if self.code is not None else "unknown"
        return how if self.lost is None else f"{self.lost} ({how})"


_T = TypeVar("_T")


class Once(Generic[_T]):
    """Deferreds waiting for a value that comes once: each fires when it is known."""

    def __init__(self) -> None:
        self.value: _T | None = None
        self.fired = False
        self._waiting: list[Deferred[_T]] = []

    def wait(self) -> Deferred[_T]:
        """Fire with the value (at once if it is known)."""
        if self.fired:
            return succeed(self.value)  # type: ignore[arg-type]
        d: Deferred[_T] = Deferred(self._waiting.remove)
        self._waiting.append(d)
        return d

    def fire(self, value: _T) -> None:
        """The value is known: tell every waiter, once."""
        if self.fired:
            return
        self.fired, self.value = True, value
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(value)


class Outcomes:
    """
    What a worker process will make known once: that it listens
    (``listening()``) and how it ended (``exited()``, ``status``). Those
    who say so fire ``_ready`` and ``_exit``.
    """

    _exit: Once[ExitStatus]
    _ready: Once[str | None]

    @property
    def status(self) -> ExitStatus | None:
        """How it ended, once that is known."""
        return self._exit.value

    def exited(self) -> Deferred[ExitStatus]:
        """A Deferred that fires with the :class:`ExitStatus` once it ended."""
        return self._exit.wait()

    def listening(self) -> Deferred[str | None]:
        """
        Fire once it says it listens (never, if it does not say so): with
        the host it is reached at, if it said that too.
        """
        return self._ready.wait()


def _char_boundary(buf: bytes, start: int, cut: int) -> int:
    """
    ``cut``, moved back (by at most 3 bytes, never to ``start``) so that it
    does not fall inside a UTF-8 sequence: a long line is split between
    characters, not through one.
    """
    for back in range(4):
        if cut - back <= start:
            break
        if buf[cut - back] & 0xC0 != 0x80:  # not a continuation byte
            return cut - back
    return cut


class LineSplitter:
    """
    Split a byte stream into lines for ``emit(text)``: a line longer than
    ``max_line`` bytes goes out in pieces of that size, bytes that are not
    UTF-8 are replaced, and nothing is held beyond ``max_line`` bytes.
    """

    def __init__(self, emit: Callable[[str], None], max_line: int = MAX_LINE):
        self._emit = emit
        self._max = max_line
        self._buf = b""

    def _out(self, raw: bytes) -> None:
        self._emit(raw.decode("utf-8", errors="replace").rstrip("\r"))

    def feed(self, data: bytes) -> None:
        """Take another chunk of output."""
        buf = self._buf + data
        start = 0
        while True:
            end = buf.find(b"\n", start, start + self._max + 1)
            if end == -1:
                if len(buf) - start > self._max:
                    cut = _char_boundary(buf, start, start + self._max)
                    self._out(buf[start:cut])
                    start = cut
                    continue
                break
            self._out(buf[start:end])
            start = end + 1
        self._buf = buf[start:]

    def flush(self) -> None:
        """Emit whatever is left without its newline."""
        if self._buf:
            self._out(self._buf)
            self._buf = b""


class OutputTail:
    """
    The last ``max_lines`` lines of a job's output, and at most
    ``max_chars`` characters of them (the lines are text: decoded, a
    character stands for one to four bytes of what the worker wrote).
    """

    def __init__(self, max_lines: int = 200, max_chars: int = 256 * 1024):
        self._lines: collections.deque[tuple[float, str, str]] = collections.deque()
        self._max_lines = max_lines
        self._max_chars = max_chars
        self._chars = 0

    def append(self, when: float, stream: str, line: str) -> None:
        """Keep one line (cut to ``max_chars``), dropping the oldest past either bound."""
        line = line[: self._max_chars]
        self._lines.append((when, stream, line))
        self._chars += len(line)
        while len(self._lines) > self._max_lines or self._chars > self._max_chars:
            self._chars -= len(self._lines.popleft()[2])

    def lines(self, stream: str | None = None) -> list[dict[str, Any]]:
        """The kept lines as ``{"time", "stream", "line"}`` records, oldest first."""
        return [
            {"time": t, "stream": s, "line": line}
            for t, s, line in self._lines
            if stream is None or s == stream
        ]

    def last(self, count: int, since: float | None = None, stream: str | None = None) -> list[str]:
        """
        The text of the last ``count`` lines, only those kept at ``since``
        or later and of ``stream`` if given.
        """
        found = [
            line
            for t, s, line in self._lines
            if (since is None or t >= since) and (stream is None or s == stream)
        ]
        return found[-count:] if count > 0 else []


class WorkerProtocol(Outcomes, ProcessProtocol):
    """
    Write ``config`` to the child's stdin and close it; split stdout and
    stderr into lines for ``on_line(stream, text)``; fire :meth:`listening`
    waiters once the child writes a line on ``ready_fd`` (the runtime does
    once it listens); fire :meth:`exited` waiters with an
    :class:`ExitStatus` once the process is reaped and its output read.

    The child can be reaped before the last of its output has been read
    (the reactor may see SIGCHLD first), so ``exited`` waits for stdout and
    stderr to close, but for at most ``grace`` seconds on ``reactor``: a
    grandchild that keeps them open does not hold up supervision. Without
    a ``reactor``, ``exited`` fires as soon as the child is reaped.
    """

    log = Logger()

    def __init__(
        self,
        guid: str,
        config: bytes,
        on_line: Callable[[str, str], None],
        reactor: IReactorTime | None = None,
        grace: float = OUTPUT_GRACE,
        ready_fd: int = READY_FD,
    ):
        self.guid = guid
        self._config = config
        self._splitters = {
            1: LineSplitter(lambda text: on_line("stdout", text)),
            2: LineSplitter(lambda text: on_line("stderr", text)),
        }
        self._open = set(self._splitters)
        self._reactor = reactor
        self._grace = grace
        self._grace_call: IDelayedCall | None = None
        self._reaped: ExitStatus | None = None
        self._exit = Once[ExitStatus]()
        self._ready_fd = ready_fd
        self._ready = Once[str | None]()
        #: How many watchdog pings (``WATCHDOG=1``) came on the ready fd.
        self.pings = 0
        self.transport: IProcessTransport | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return getattr(self.transport, "pid", None)

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._config)
        self.transport.closeStdin()
        self._config = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == self._ready_fd:
            if b"\n" in data:
                self._ready.fire(None)
            # Each ping is one write of a few bytes (atomic on a pipe): never split.
            self.pings += data.count(WATCHDOG_LINE)
            return
        splitter = self._splitters.get(childFD)
        if splitter is not None:
            splitter.feed(data)

    def childConnectionLost(self, childFD: int) -> None:
        splitter = self._splitters.get(childFD)
        if splitter is not None:
            splitter.flush()
            self._open.discard(childFD)
            if self._reaped is not None and not self._open:
                self._done()

    def processExited(self, reason: Failure) -> None:
        self._reaped = ExitStatus.from_reason(reason)
        if not self._open or self._reactor is None:
            self._done()
        elif self._grace_call is None:
            self._grace_call = self._reactor.callLater(self._grace, self._done)

    def processEnded(self, reason: Failure) -> None:
        if self._reaped is None:
            self._reaped = ExitStatus.from_reason(reason)
        self._done()

    def _done(self) -> None:
        """The child is reaped and its output read (or the grace is over)."""
        if self._grace_call is not None and self._grace_call.active():
            self._grace_call.cancel()
        self._grace_call = None
        if self._exit.value is not None or self._reaped is None:
            return
        for splitter in self._splitters.values():
            splitter.flush()
        self._exit.fire(self._reaped)
