"""
The daemon's side of one warm template process (:class:`Template`): it
starts the process (:mod:`turberfield_twisted.launch.warm.template`), hears
it on its socket (ready, refused, each fork and each worker's end), asks it
to fork a worker with that worker's fds, and retires or closes it; its
states are those :data:`~.states.TEMPLATE_MOVES` declares.
:class:`~.launcher.WarmLauncher` keeps one per warm module.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.contract import ready_fd
from turberfield_twisted.launch.interfaces import LineSink, ListenSocket
from turberfield_twisted.launch.local import LocalLauncher, SpawnFailed, spawn_in_session
from turberfield_twisted.launch.protocol import ExitStatus, LineSplitter, Once
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.launch.warm.process import Reader, WarmProcess
from turberfield_twisted.launch.warm.states import TEMPLATE_MOVES, TemplateState, TemplateTold
from turberfield_twisted.launch.warm.template import MAX_MESSAGE, RLIMIT_NAMES, send

__all__ = ["Template"]

_T = TypeVar("_T")


class _TemplateProtocol(ProcessProtocol):
    """The template process's output goes to the log, line by line; its end to ``ended``."""

    def __init__(self, template: Template):
        self.template = template
        self._lines = {fd: LineSplitter(self._say) for fd in (1, 2)}

    def _say(self, line: str) -> None:
        self.template.log.info("template of {module}: {line}", module=self.template.module,
                               line=line)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD in self._lines:
            self._lines[childFD].feed(data)

    def processEnded(self, reason: Failure) -> None:
        for lines in self._lines.values():
            lines.flush()
        self.template.ended(ExitStatus.from_reason(reason))


class Template:
    """
    One template process of ``module``, started by ``cold`` (its python,
    environment and session), in a :class:`TemplateState` (see
    :data:`TEMPLATE_MOVES`); ``on_end(template)`` is called when its
    process has ended.
    """

    log = Logger()

    def __init__(self, reactor: IDaemonReactor, module: str, cold: LocalLauncher,
                 on_end: Callable[[Template], None]):
        self._reactor = reactor
        self.module = module
        self.cold = cold
        self.on_end = on_end
        self.state = TemplateState.STARTING
        self.pid: int | None = None
        self.refusal: str | None = None
        self._ids = 0
        self._waiting: dict[int, WarmProcess] = {}
        self._workers: dict[int, WarmProcess] = {}
        self._ended = Once[None]()
        self._settled = Once[TemplateState]()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        ours.setblocking(False)
        argv = [cold.python, "-P", "-m", "turberfield_twisted.launch.warm.template", module]
        try:
            self._process = spawn_in_session(
                reactor, _TemplateProtocol(self), argv, cold.setsid, cold.env,
                {0: "w", 1: "r", 2: "r", 3: theirs.fileno()}, module)
        except SpawnFailed:
            ours.close()
            raise
        finally:
            theirs.close()
        self._process.closeStdin()
        self._control: Reader | None = Reader(ours.fileno(), self._readable, self._lost)
        reactor.addReader(self._control)

    def move(self, told: TemplateTold) -> bool:
        """Take the move :data:`TEMPLATE_MOVES` declares for ``told``; False if none."""
        target = TEMPLATE_MOVES.get((self.state, told))
        if target is None:
            return False
        self.state = target
        return True

    # -- the socket --------------------------------------------------------

    def _readable(self) -> bool:
        while True:
            try:
                data = self._sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self._heard(json.loads(data))

    def _lost(self) -> None:
        self.move(TemplateTold.LOST)
        self._settled.fire(self.state)

    def settled(self) -> Deferred[TemplateState]:
        """Fire with its state once it is no longer ``starting`` (ready, refused or dead)."""
        return self._settled.wait()

    def gone(self) -> Deferred[None]:
        """Fire once its process has ended."""
        return self._ended.wait()

    def _heard(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            self.pid = int(message["ready"])
            if self.move(TemplateTold.SAID_READY):  # not retired meanwhile
                self.log.info("template of {module} ready (pid {pid})", module=self.module,
                              pid=self.pid)
            self._settled.fire(self.state)
        elif "refused" in message and self.move(TemplateTold.SAID_REFUSED):
            self.refusal = str(message["refused"])
            self.log.error("{module} can't be warm: {why}; its workers start cold",
                           module=self.module, why=self.refusal)
            self._settled.fire(self.state)
        elif "spawned" in message:
            process = self._waiting.pop(int(message["spawned"]), None)
            if process is not None:
                self._workers[int(message["pid"])] = process
                process.forked(int(message["pid"]))
        elif "exit" in message:
            process = self._workers.pop(int(message["exit"]), None)
            if process is not None:
                process.ended(ExitStatus(message.get("code"), message.get("signal")))
        elif "failed" in message:
            process = self._waiting.pop(int(message["failed"]), None)
            if process is not None:
                process.ended(ExitStatus(70, None))

    # -- spawning ----------------------------------------------------------

    def spawn(self, guid: str, port: int, config: bytes, on_line: LineSink,
              limits: Limits | None = None,
              sockets: Sequence[ListenSocket] = ()) -> WarmProcess:
        """
        Ask the template to fork a worker (handed ``sockets``), which sets
        ``limits``' rlimits on itself before it runs the module; raise
        OSError if it can't be asked.
        """
        process = WarmProcess(self._reactor, guid, config, on_line, ready_fd(len(sockets)))
        stdin, stdout, stderr = os.pipe(), os.pipe(), os.pipe()
        lifeline, ready = os.pipe(), os.pipe()
        theirs = [stdin[0], stdout[1], stderr[1], lifeline[0], ready[1]]
        self._ids += 1
        request = {"spawn": self._ids, "guid": guid, "port": port,
                   "sockets": [sock.name for sock in sockets]}
        try:
            # The template's fds are closed when they are sent: the sockets' are the daemon's.
            rlimits = limits.rlimits() if limits is not None else {}
            request["rlimits"] = {RLIMIT_NAMES[which]: value for which, value in rlimits.items()}
            send(self._sock, request, [*theirs[:3], *(sock.fd for sock in sockets),
                                       *theirs[3:]])
        except OSError:
            for fd in (stdin[1], stdout[0], stderr[0], lifeline[1], ready[0]):
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self._waiting[self._ids] = process
        process.attach(stdin[1], stdout[0], stderr[0], ready[0])
        # The daemon holds the lifeline's write end, never writing it, until the worker ends.
        process.exited().addBoth(_close_quietly, lifeline[1])
        return process

    # -- its end -----------------------------------------------------------

    def retire(self) -> None:
        """Fork no more; exit once the last worker forked has ended."""
        if self.move(TemplateTold.RETIRE):
            try:
                send(self._sock, {"retire": True})
            except OSError:
                pass

    def _drop_control(self) -> None:
        """Stop reading the socket and close it (once)."""
        if self._control is not None:
            self._reactor.removeReader(self._control)
            self._control = None
            self._sock.close()

    def close(self) -> Deferred[None]:
        """Close the socket: the template exits at once. Fire once it has."""
        self._drop_control()
        return self._ended.wait()

    def ended(self, status: ExitStatus) -> None:
        """The template process ended: its workers are orphans now."""
        self._drop_control()
        if self.state in (TemplateState.STARTING, TemplateState.READY):
            self.log.warn("template of {module} ended: {status}", module=self.module,
                          status=status.describe())
        self.move(TemplateTold.ENDED)
        for process in [*self._waiting.values(), *self._workers.values()]:
            process.orphaned()
        self._waiting.clear()
        self._workers.clear()
        self._ended.fire(None)
        self._settled.fire(self.state)
        self.on_end(self)


def _close_quietly(result: _T, fd: int) -> _T:
    try:
        os.close(fd)
    except OSError:
        pass
    return result
