"""
Process checks for end-to-end tests: wait for pids to exit (woken by a
pidfd per process, never by polling), list what is still alive (one
walk of ``/proc``: :func:`processes`, and :func:`children_of` and
:func:`group_members` on it) and end what a test left (:func:`kill_left`,
and :func:`kill_now` where no reactor runs); and :class:`Child`, a
spawned process whose output lines a test can wait for.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from turberfield_twisted.launch.protocol import ExitStatus, LineSplitter

__all__ = ["Child", "Proc", "children_of", "group_members", "idle", "kill_left", "kill_now",
           "pid_alive", "processes", "wait_gone"]


@attrs.frozen
class Proc:
    """A live process as ``/proc`` shows it: its pid, parent, process group and argv."""

    pid: int
    ppid: int
    pgid: int
    argv: tuple[str, ...]


def _stat(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _argv(pid: str) -> tuple[str, ...]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return ()
    return tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0")[:-1])


#: A Python process that does nothing until its standard input closes.
IDLE_ARGV = (sys.executable, "-c", "import sys; sys.stdin.read()")


def idle(**popen: Any) -> subprocess.Popen[bytes]:
    """Start a stand-in process that idles until the test ends it by pid.

    It waits on its stdin, a pipe only the test holds, so one the test forgets
    ends with the test's own process rather than after a fixed time.
    """
    return subprocess.Popen(IDLE_ARGV, stdin=subprocess.PIPE, **popen)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def processes(where: Callable[[Proc], bool] = lambda proc: True,
              argv: bool = False) -> list[Proc]:
    """
    Every live process (zombies are gone) ``where(proc)`` is true of, from
    one walk of ``/proc``; with ``argv``, each one's command line is read
    too (else it is empty).
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields is None or fields[0] == "Z":
                continue
            proc = Proc(int(entry), int(fields[1]), int(fields[2]),
                        _argv(entry) if argv else ())
            if where(proc):
                found.append(proc)
    return found


def group_members(pgid: int) -> list[int]:
    """Live pids in process group ``pgid``."""
    return [proc.pid for proc in processes(lambda proc: proc.pgid == pgid)]


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid``."""
    return [proc.pid for proc in processes(lambda proc: proc.ppid == pid)]


@implementer(IReadDescriptor)
class _PidFD:
    """A process's pidfd in the reactor: readable once the process has exited."""

    def __init__(self, reactor: Any, fd: int):
        self._reactor, self._fd = reactor, fd
        self.exited: defer.Deferred[None] = defer.Deferred(lambda _: self.close())

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "pidfd"

    def doRead(self) -> None:
        self.close()
        self.exited.callback(None)

    def connectionLost(self, reason: Any) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            self._reactor.removeReader(self)
            os.close(self._fd)
            self._fd = -1


def _exit_of(reactor: Any, pid: int) -> defer.Deferred[None]:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return defer.succeed(None)
    watch = _PidFD(reactor, fd)
    reactor.addReader(watch)
    return watch.exited


def wait_gone(reactor: Any, pids: Iterable[int], timeout: float = 10.0) -> defer.Deferred[Any]:
    """
    Fire once every pid has exited; fail with ``TimeoutError`` after
    ``timeout`` seconds. ``reactor`` is any reactor that watches file
    descriptors (each exit is seen on a pidfd).
    """
    d = defer.gatherResults([_exit_of(reactor, pid) for pid in pids], consumeErrors=True)
    d.addErrback(_first)
    return d.addTimeout(timeout, reactor)


def _kill(pids: Iterable[int]) -> list[int]:
    """SIGKILL each of ``pids`` that is alive; those it was sent to."""
    killed = []
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
    return killed


async def kill_left(reactor: Any, pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """
    SIGKILL each of ``pids`` still alive (by pid) and wait until they have
    exited, at most ``timeout`` seconds (then give up waiting: a killed
    process is gone in a moment). Return the ones that were alive: what a
    test left behind, ended so that the tests after it start clean.
    """
    killed = _kill(pids)
    try:
        await wait_gone(reactor, killed, timeout)
    except defer.TimeoutError:
        pass
    return killed


def kill_now(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """
    As :func:`kill_left`, for where no reactor runs (a test's teardown
    outside it): the wait blocks on the pidfds, at most ``timeout``
    seconds in all.
    """
    killed = _kill(pids)
    poll = select.poll()
    fds = []
    for pid in killed:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue
        poll.register(fds[-1], select.POLLIN)
    deadline = time.monotonic() + timeout
    try:
        left = len(fds)
        while left:
            ready = poll.poll(max(0.0, deadline - time.monotonic()) * 1000)
            if not ready:
                break  # given up waiting, as kill_left does
            for fd, _ in ready:
                poll.unregister(fd)
                left -= 1
    finally:
        for fd in fds:
            os.close(fd)
    return killed


def _first(failure: Failure) -> Failure:
    """The cancel inside a gathered failure: the timeout turns it into ``TimeoutError``."""
    if isinstance(failure.value, defer.FirstError):
        return failure.value.subFailure
    return failure


class Child(ProcessProtocol):
    """
    A child process (a foreground daemon, say) named ``name``: ``lines`` is
    all it wrote to stdout and stderr, :meth:`logged` waits for a line, and
    ``ended`` fires with its :class:`ExitStatus`.
    """

    def __init__(self, name: str):
        self.name = name
        self.lines: list[str] = []
        self.pid: int | None = None
        self.ended: defer.Deferred[ExitStatus] = defer.Deferred()
        split = LineSplitter(self._line)
        self._splitters = {1: split, 2: split}
        self._waiting: list[tuple[re.Pattern[str], int, defer.Deferred[int]]] = []

    def logged(self, pattern: str, after: int = 0) -> defer.Deferred[int]:
        """
        Fire with the index in ``lines`` of the first line from index
        ``after`` on that ``pattern`` (a regular expression) matches, at
        once if there is one; fail if the process ends first.
        """
        wanted = re.compile(pattern)
        for index in range(after, len(self.lines)):
            if wanted.search(self.lines[index]):
                return defer.succeed(index)
        if self.ended.called:
            return defer.fail(self._unlogged(wanted))
        d: defer.Deferred[int] = defer.Deferred()
        self._waiting.append((wanted, after, d))
        return d

    def _unlogged(self, wanted: re.Pattern[str]) -> RuntimeError:
        return RuntimeError(f"{self.name} ended without logging {wanted.pattern!r}:\n"
                            + "\n".join(self.lines[-20:]))

    def _line(self, line: str) -> None:
        self.lines.append(line)
        index = len(self.lines) - 1
        for item in list(self._waiting):
            wanted, after, d = item
            if index >= after and wanted.search(line):
                self._waiting.remove(item)
                d.callback(index)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        splitter = self._splitters.get(childFD)
        if splitter is not None:
            splitter.feed(data)

    def processEnded(self, reason: Any) -> None:
        self._splitters[1].flush()
        status = ExitStatus.from_reason(reason)
        waiting, self._waiting = self._waiting, []
        for wanted, _, d in waiting:
            d.errback(self._unlogged(wanted))
        self._ending(status)
        self.ended.callback(status)

    def _ending(self, status: ExitStatus) -> None:
        """What a subclass does once the lines are all in, before ``ended`` fires."""
