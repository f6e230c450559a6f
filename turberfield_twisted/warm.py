"""
Warm launch: workers of a module whose section says ``warm = true`` are
forked from a template process that has already imported the runtime,
Klein and the module (:mod:`turberfield_twisted.forkserver`), instead of
starting a new interpreter.

:class:`WarmLauncher` is an :class:`~.launcher.ILauncher`: it keeps one
:class:`Template` per warm module and hands every other spawn (and a warm
one while its template is not ready, or was refused) to a cold launcher.
A warm worker is what a cold one is: ``--guid``/``--port``, its config on
its own stdin (a pipe the daemon writes, passed to the template with the
other four over the template's socket), its lifeline and ready fd, a
session of its own that the daemon signals, its exit status reported (by
the template, its parent). The template holds no secret of any job.

A template that dies is started again (its workers live on; their ends
are seen through a pidfd each); :meth:`WarmLauncher.reload` retires a
module's template (it forks no more and exits once its last worker has)
so that the next spawn starts a new one, with the module as it is now.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Container
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.process import ProcessReader, ProcessWriter
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .contract import READY_FD
from .forkserver import MAX_MESSAGE, send
from .launcher import ILauncher, IWorkerProcess, LineSink, LocalLauncher
from .process import ExitStatus, Once, WorkerProtocol

__all__ = ["Template", "WarmLauncher", "WarmProcess"]

#: Seconds before a template that died once ready is started again.
RESTART_DELAY = 1.0


@implementer(IReadDescriptor)
class _Reader:
    """Call ``read()`` when ``fd`` is readable, ``lost()`` once, when it is done."""

    def __init__(self, fd: int, read: Callable[[], bool], lost: Callable[[], None]):
        self.fd = fd
        self._read = read
        self._lost = lost

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> Any:
        return None if self._read() else ConnectionDone()

    def connectionLost(self, reason: Failure) -> None:
        self._lost()

    def logPrefix(self) -> str:
        return "warm"


@implementer(IWorkerProcess)
class WarmProcess:
    """
    A worker forked by a template: its :class:`WorkerProtocol` sees it as
    a spawned process (config to stdin, output lines, ready fd, exit).
    ``pid`` is known once the template has forked it.
    """

    log = Logger()

    def __init__(self, reactor: Any, guid: str, config: bytes, on_line: LineSink):
        self._reactor = reactor
        self.protocol = WorkerProtocol(guid, config, on_line, reactor=reactor)
        self._group: int | None = None
        self._pending: list[int] = []
        self._pipes: dict[int, Any] = {}
        self._watch: _Reader | None = None

    # -- what the protocol's transport needs -----------------------------

    def attach(self, stdin: int, stdout: int, stderr: int, ready: int) -> None:
        """Read and write the daemon's ends of the worker's pipes; write its config."""
        self._pipes = {
            0: ProcessWriter(self._reactor, self, 0, stdin),
            1: ProcessReader(self._reactor, self, 1, stdout),
            2: ProcessReader(self._reactor, self, 2, stderr),
            READY_FD: ProcessReader(self._reactor, self, READY_FD, ready),
        }
        self.protocol.makeConnection(self)

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

    # -- IWorkerProcess ---------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The worker's pid, once forked and until it is reaped."""
        return None if self.protocol.status is not None else self._group

    def forked(self, pid: int) -> None:
        """The template forked it as ``pid``: send it what was asked meanwhile."""
        self._group = pid
        pending, self._pending = self._pending, []
        for sig in pending:
            self.signal(sig)

    def ended(self, status: ExitStatus) -> None:
        """It was reaped (or is gone, ``status`` unknown): tell the protocol."""
        if self._watch is not None:
            self._reactor.removeReader(self._watch)
            os.close(self._watch.fd)
            self._watch = None
        if status.code == 0 and status.signal is None:
            reason = Failure(ProcessDone(0))
        else:
            reason = Failure(ProcessTerminated(status.code, status.signal))
        self.protocol.processExited(reason)
        self.protocol.processEnded(reason)

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
        self._watch = _Reader(fd, self._gone, lambda: None)
        self._reactor.addReader(self._watch)

    def _gone(self) -> bool:
        """Its pidfd is readable: it has ended."""
        self.ended(ExitStatus(None, None))
        return True

    def exited(self) -> Deferred[ExitStatus]:
        """See :meth:`IWorkerProcess.exited`."""
        return self.protocol.exited()

    def listening(self) -> Deferred[None]:
        """See :meth:`IWorkerProcess.listening`."""
        return self.protocol.listening()

    def signal(self, sig: int) -> None:
        """See :meth:`IWorkerProcess.signal`: its session's group, once it has a pid."""
        if self._group is None:
            self._pending.append(sig)
            return
        try:
            os.killpg(self._group, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(self._group, sig)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Close the daemon's ends of the pipes (the spawn failed)."""
        for pipe in list(self._pipes.values()):
            pipe.loseConnection()


class _TemplateProtocol(ProcessProtocol):
    """The template process's output goes to the log; its end to ``ended``."""

    def __init__(self, template: Template):
        self.template = template

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self.template.log.info("template of {module}: {line}",
                                   module=self.template.module, line=line)

    def processEnded(self, reason: Failure) -> None:
        self.template.ended(ExitStatus.from_reason(reason))


class Template:
    """
    One template process of ``module``, started by ``cold`` (its python,
    environment and session). ``state`` is ``starting``, ``ready``,
    ``refused``, ``retired`` or ``dead``; ``on_end(template)`` is called
    when its process has ended.
    """

    log = Logger()

    def __init__(self, reactor: Any, module: str, cold: LocalLauncher,
                 on_end: Callable[[Template], None]):
        self._reactor = reactor
        self.module = module
        self.cold = cold
        self.on_end = on_end
        self.state = "starting"
        self.pid: int | None = None
        self.refusal: str | None = None
        self._ids = 0
        self._waiting: dict[int, WarmProcess] = {}
        self._workers: dict[int, WarmProcess] = {}
        self._ended = Once[None]()
        self._settled = Once[str]()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        ours.setblocking(False)
        args = [cold.python, "-P", "-m", "turberfield_twisted.forkserver", module]
        executable = cold.python
        if cold.setsid:
            executable, args = cold.setsid, ["setsid", *args]
        try:
            self._process = reactor.spawnProcess(
                _TemplateProtocol(self), executable, args, env=cold.env,
                childFDs={0: "w", 1: "r", 2: "r", 3: theirs.fileno()})
        finally:
            theirs.close()
        self._process.closeStdin()
        self._control = _Reader(ours.fileno(), self._readable, self._lost)
        reactor.addReader(self._control)

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
        if self.state in ("starting", "ready"):
            self.state = "dead"
        self._settled.fire(self.state)

    def settled(self) -> Deferred[str]:
        """Fire with its state once it is no longer ``starting`` (ready, refused or dead)."""
        return self._settled.wait()

    def gone(self) -> Deferred[None]:
        """Fire once its process has ended."""
        return self._ended.wait()

    def _heard(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            self.pid, self.state = int(message["ready"]), "ready"
            self.log.info("template of {module} ready (pid {pid})", module=self.module,
                          pid=self.pid)
            self._settled.fire(self.state)
        elif "refused" in message:
            self.state, self.refusal = "refused", str(message["refused"])
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

    def spawn(self, guid: str, port: int, config: bytes, on_line: LineSink) -> WarmProcess:
        """Ask the template to fork a worker; raise OSError if it can't be asked."""
        process = WarmProcess(self._reactor, guid, config, on_line)
        stdin, stdout, stderr = os.pipe(), os.pipe(), os.pipe()
        lifeline, ready = os.pipe(), os.pipe()
        theirs = [stdin[0], stdout[1], stderr[1], lifeline[0], ready[1]]
        self._ids += 1
        try:
            send(self._sock, {"spawn": self._ids, "guid": guid, "port": port}, theirs)
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
        if self.state in ("starting", "ready"):
            self.state = "retired"
            try:
                send(self._sock, {"retire": True})
            except OSError:
                pass

    def close(self) -> Deferred[None]:
        """Close the socket: the template exits at once. Fire once it has."""
        if self._control is not None:
            self._reactor.removeReader(self._control)
            self._control = None  # type: ignore[assignment]
            self._sock.close()
        return self._ended.wait()

    def ended(self, status: ExitStatus) -> None:
        """The template process ended: its workers are orphans now."""
        if self._control is not None:
            self._reactor.removeReader(self._control)
            self._control = None  # type: ignore[assignment]
            self._sock.close()
        if self.state != "refused":
            if self.state in ("starting", "ready"):
                self.log.warn("template of {module} ended: {status}", module=self.module,
                              status=status.describe())
            self.state = "dead"
        for process in [*self._waiting.values(), *self._workers.values()]:
            process.orphaned()
        self._waiting.clear()
        self._workers.clear()
        self._ended.fire(None)
        self._settled.fire(self.state)
        self.on_end(self)


def _close_quietly(result: Any, fd: int) -> Any:
    try:
        os.close(fd)
    except OSError:
        pass
    return result


@implementer(ILauncher)
class WarmLauncher:
    """
    Fork workers of the modules ``is_warm(module)`` names from a template
    each; start everything else with ``cold`` (a :class:`LocalLauncher`),
    and a warm module's workers too while its template is not ready or if
    it was refused.
    """

    log = Logger()

    def __init__(self, reactor: Any, cold: LocalLauncher, is_warm: Callable[[str], bool]):
        self._reactor = reactor
        self.cold = cold
        self._is_warm = is_warm
        #: The current template of each warm module.
        self.templates: dict[str, Template] = {}
        self._retired: set[Template] = set()
        self._restarts: dict[str, Any] = {}
        self._awaited: dict[str, list[Deferred[Template]]] = {}
        self._closed = False

    # -- ILauncher ---------------------------------------------------------

    def check(self, module: str) -> None:
        """See :meth:`ILauncher.check`."""
        self.cold.check(module)

    def choose_port(self, ports: range, listen_addr: str, prefer: int | None,
                    taken: Container[int]) -> int:
        """See :meth:`ILauncher.choose_port`."""
        return self.cold.choose_port(ports, listen_addr, prefer, taken)

    def address(self, listen_addr: str) -> str:
        """See :meth:`ILauncher.address`."""
        return self.cold.address(listen_addr)

    def spawn(self, module: str, guid: str, port: int, config: bytes,
              on_line: LineSink) -> IWorkerProcess:
        """See :meth:`ILauncher.spawn`: forked if the module's template is ready, else cold."""
        template = self.template(module) if self._is_warm(module) else None
        if template is not None and template.state == "ready":
            try:
                return template.spawn(guid, port, config, on_line)
            except OSError as exc:
                self.log.warn("job {guid}: the template of {module} could not fork it ({why});"
                              " it starts cold", guid=guid, module=module, why=str(exc))
        return self.cold.spawn(module, guid, port, config, on_line)

    # -- templates ---------------------------------------------------------

    def template(self, module: str) -> Template | None:
        """``module``'s template, started now if it has none (None once closed)."""
        if self._closed:
            return None
        found = self.templates.get(module)
        if found is None or found.state == "dead":
            if module in self._restarts:
                return None  # it starts again after a delay
            found = self.templates[module] = Template(self._reactor, module, self.cold,
                                                      self._template_ended)
            for waiting in self._awaited.pop(module, []):
                waiting.callback(found)
        return found

    def next_template(self, module: str) -> Deferred[Template]:
        """Fire with the next template started for ``module``."""
        d: Deferred[Template] = Deferred()
        self._awaited.setdefault(module, []).append(d)
        return d

    def prepare(self, modules: list[str]) -> None:
        """Start the templates of ``modules`` (the warm ones) now, before any launch."""
        for module in modules:
            if self._is_warm(module):
                self.template(module)

    def reload(self, module: str) -> None:
        """
        ``module`` changed: retire its template (its workers run on and are
        still reported) and start a new one, which imports it afresh. A
        refused module gets another chance.
        """
        old = self.templates.pop(module, None)
        if old is not None:
            old.retire()
            self._retired.add(old)
        if self._is_warm(module):
            self.template(module)

    def _template_ended(self, template: Template) -> None:
        self._retired.discard(template)
        if self._closed or self.templates.get(template.module) is not template:
            return
        if template.state == "refused":
            return  # cold from now on, until reload
        module = template.module
        del self.templates[module]

        def again() -> None:
            self._restarts.pop(module, None)
            if self._is_warm(module):
                self.template(module)

        self._restarts[module] = self._reactor.callLater(RESTART_DELAY, again)

    def close(self) -> Deferred[None]:
        """Close every template (they exit at once); fire once they have."""
        from twisted.internet.defer import gatherResults

        self._closed = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        templates = [*self.templates.values(), *self._retired]
        return gatherResults([t.close() for t in templates]).addCallback(lambda _: None)


def is_warm_module(settings: Callable[[], Any]) -> Callable[[str], bool]:
    """``is_warm(module)`` over the settings in force (its section's ``warm``)."""

    def is_warm(module: str) -> bool:
        found = settings().module(module)
        return bool(found is not None and getattr(found, "warm", False))

    return is_warm

