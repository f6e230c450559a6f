"""
Warm launch: workers of a module whose section says ``warm = true`` are
forked from a template process that has already imported the runtime,
Klein and the module (:mod:`turberfield_twisted.launch.warm.template`), instead of
starting a new interpreter.

:class:`WarmLauncher` is an
:class:`~turberfield_twisted.launch.interfaces.ILauncher`: it keeps one
:class:`Template` per warm module and hands every other spawn (and a warm
one while its template is not ready, or was refused) to a cold launcher.
A warm worker is what a cold one is: ``--guid``/``--port``, its config on
its own stdin (a pipe the daemon writes, passed to the template with the
other four over the template's socket), its lifeline and ready fd, a
session of its own that the daemon signals, its exit status reported (by
the template, its parent). The template holds no secret of any job.

A template that dies is started again (its workers live on; their ends
are seen through a pidfd each). On a config reload
:meth:`WarmLauncher.reload` retires every template (it forks no more and
exits once its last worker has) and starts new ones, which import the
modules as they are now.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.contract import ready_fd
from turberfield_twisted.launch.interfaces import ILauncher, IWorkerProcess, LineSink, ListenSocket
from turberfield_twisted.launch.local import LocalLauncher, SpawnFailed, spawn_in_session
from turberfield_twisted.launch.protocol import ExitStatus, LineSplitter, Once
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.launch.warm.process import Reader, WarmProcess
from turberfield_twisted.launch.warm.states import TEMPLATE_MOVES, TemplateState, TemplateTold
from turberfield_twisted.launch.warm.template import MAX_MESSAGE, RLIMIT_NAMES, send

__all__ = ["RESTART_DELAY", "Template", "WarmLauncher"]

_T = TypeVar("_T")

#: Seconds before a template that died once ready is started again.
RESTART_DELAY = 1.0


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


@implementer(ILauncher)
class WarmLauncher:
    """
    Fork workers of the modules ``is_warm(module)`` names from a template
    each; start everything else with ``cold`` (a :class:`LocalLauncher`),
    and a warm module's workers too while its template is not ready or if
    it was refused.
    """

    log = Logger()

    def __init__(self, reactor: IDaemonReactor, cold: LocalLauncher,
                 is_warm: Callable[[str], bool]):
        self._reactor = reactor
        self.cold = cold
        self._is_warm = is_warm
        #: The current template of each warm module.
        self.templates: dict[str, Template] = {}
        self._retired: set[Template] = set()
        self._restarts: dict[str, IDelayedCall] = {}
        self._closed = False

    # -- ILauncher ---------------------------------------------------------

    def check(self, module: str) -> None:
        """See :meth:`ILauncher.check`."""
        self.cold.check(module)

    def port_in_use(self, module: str, listen_addr: str, port: int) -> bool:
        """See :meth:`ILauncher.port_in_use`."""
        return self.cold.port_in_use(module, listen_addr, port)

    def address(self, module: str, listen_addr: str) -> str:
        """See :meth:`ILauncher.address`."""
        return self.cold.address(module, listen_addr)

    def spawn(self, module: str, guid: str, port: int, config: bytes,
              on_line: LineSink, limits: Limits | None = None,
              sockets: Sequence[ListenSocket] = ()) -> IWorkerProcess:
        """
        See :meth:`ILauncher.spawn`: forked if the module's template is ready
        (the fork sets ``limits``' rlimits on itself before it runs the
        module), else cold.
        """
        template = self.template(module) if self._is_warm(module) else None
        if template is not None and template.state is TemplateState.READY:
            try:
                return template.spawn(guid, port, config, on_line, limits, sockets)
            except OSError as exc:
                self.log.warn("job {guid}: the template of {module} could not fork it ({why});"
                              " it starts cold", guid=guid, module=module, why=str(exc))
        return self.cold.spawn(module, guid, port, config, on_line, limits, sockets)

    def renew(self, module: str) -> Deferred[None]:
        """
        See :meth:`ILauncher.renew`: a warm module's template is retired (its
        workers run on) and a new one imports the module as it is now; fire
        once that one is ready, refused or dead (its workers start cold until
        it is ready).
        """
        if not self._is_warm(module):
            return succeed(None)
        old = self.templates.pop(module, None)
        if old is not None:
            old.retire()
            if old.state is TemplateState.RETIRED:
                self._retired.add(old)
        fresh = self.template(module)
        if fresh is None:
            return succeed(None)
        return fresh.settled().addCallback(lambda _: None)

    # -- templates ---------------------------------------------------------

    def template(self, module: str) -> Template | None:
        """
        ``module``'s template, started now if it has none (None once closed,
        while it waits to start again, or if it could not be started).
        """
        if self._closed:
            return None
        found = self.templates.get(module)
        if found is None or found.state is TemplateState.DEAD:
            if module in self._restarts:
                return None  # it starts again after a delay
            try:
                found = Template(self._reactor, module, self.cold, self._template_ended)
            except SpawnFailed as exc:
                self.log.error("the template of {module} could not be started ({why}); its"
                               " workers start cold", module=module, why=str(exc))
                return None
            self.templates[module] = found
        return found

    def prepare(self, modules: list[str]) -> None:
        """
        Prepare the cold launcher (:meth:`.LocalLauncher.prepare`) and start
        the templates of ``modules`` (the warm ones) now, before any launch.
        """
        self.cold.prepare(modules)
        self._start(modules)

    def reload(self, modules: list[str]) -> None:
        """
        The config was read again: retire every template (it forks no more;
        its workers run on, are still reported, and it exits after the
        last) and start one for each warm module of ``modules``, which
        imports the module afresh. A refused module gets another chance,
        and the cold launcher looks for modules afresh.
        """
        self.cold.reload(modules)
        for old in self.templates.values():
            old.retire()
            if old.state is TemplateState.RETIRED:
                self._retired.add(old)
        self.templates.clear()
        self._start(modules)

    def _start(self, modules: list[str]) -> None:
        for module in modules:
            if self._is_warm(module):
                self.template(module)

    def _template_ended(self, template: Template) -> None:
        self._retired.discard(template)
        if self._closed or self.templates.get(template.module) is not template:
            return
        if template.state is TemplateState.REFUSED:
            return  # cold from now on, until reload
        module = template.module
        del self.templates[module]

        def again() -> None:
            self._restarts.pop(module, None)
            if self._is_warm(module):
                self.template(module)

        self._restarts[module] = self._reactor.callLater(RESTART_DELAY, again)

    def every_template(self) -> list[Template]:
        """Every template it holds: the current ones, and those retired that still run."""
        return [*self.templates.values(), *self._retired]

    def close(self) -> Deferred[None]:
        """Close every template (they exit at once); fire once they have."""
        self._closed = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        return gatherResults([t.close() for t in self.every_template()]).addCallback(
            lambda _: None)

