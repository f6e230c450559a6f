"""
Fakes for tests of launch, restart, backoff and stop logic on a
:class:`~twisted.internet.task.Clock`: no process is ever started, no
port bound, and time moves only when the test says (``clock.advance``).

- :class:`FakeProcessReactor`: a Clock-driven reactor whose
  ``spawnProcess`` records each call and hands back a :class:`FakeProcess`
  transport that records writes and signals (for the real
  :class:`~turberfield_twisted.launch.local.LocalLauncher`).
- :class:`FakeLauncher`: an :class:`~turberfield_twisted.launch.interfaces.ILauncher`
  whose workers are :class:`FakeWorker` records that a test ends by hand
  (:class:`FakeRemoteWorker` for a module it runs "elsewhere").
- :class:`FakeHealth`: answers an Initiator's health checks at once.
- :func:`initiator_on_clock`: an Initiator built on all three.

Each fake is checked against the interface it stands for when this
module is imported (``verifyClass``); tests check instances with
``verifyObject``.

::

    world = initiator_on_clock({"init": {"child_port_min": 9000, "child_port_max": 9009},
                                "my.worker": {"backoff_initial": 1}})
    guid = await world.init.launch("my.worker")   # ready: FakeHealth answers at once
    world.launcher.latest(guid).exit(1)           # it crashes
    world.clock.advance(0)                        # its first restart is due at once
    assert world.states(guid)[-4:] == ["backoff", "waiting", "starting", "ready"]
"""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import (
    ConnectionRefusedError,
    ProcessExitedAlready,
)
from twisted.internet.interfaces import IProcessTransport, IReactorProcess
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from zope.interface import implementer
from zope.interface.verify import verifyClass

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.errors import SpawnFailed, UnknownModule
from turberfield_twisted.launch.interfaces import (
    ILauncher,
    IRemoteProcess,
    IWorkerProcess,
    ListenSocket,
)
from turberfield_twisted.launch.local import reachable
from turberfield_twisted.launch.protocol import ExitStatus, Once, Outcomes

if TYPE_CHECKING:
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.jobs.job import JobEvent
    from turberfield_twisted.testing.configs import ConfigLike

__all__ = ["FakeHealth", "FakeLauncher", "FakeProcess", "FakeProcessReactor",
           "FakeRemoteWorker", "FakeWorker", "InitiatorOnClock", "initiator_on_clock"]

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
        reason = ExitStatus(code if signal is None else None, signal).as_reason()
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


@implementer(IWorkerProcess)
@attrs.define(eq=False)
class FakeWorker(Outcomes):
    """
    A worker process that exists only as this record: what it was started
    with (``limits`` too), the signals it got (``signals``). It ends when
    the test calls :meth:`exit`, or at once on a signal listed in ``dies_on``.
    """

    module: str
    guid: str
    port: int
    config: bytes = attrs.field(repr=False)
    on_line: Callable[[str, str], None] = attrs.field(repr=False)
    pid: int | None = attrs.field(factory=lambda: next(_pids))
    signals: list[int] = attrs.field(factory=list)
    dies_on: frozenset[int] = frozenset({signal.SIGTERM, signal.SIGKILL})
    limits: Limits | None = None
    #: The listening sockets it was handed (a service's instance).
    sockets: tuple[ListenSocket, ...] = ()
    _exit: Once[ExitStatus] = attrs.field(factory=Once, repr=False)
    _ready: Once[str | None] = attrs.field(factory=Once, repr=False)

    def listen(self, host: str | None = None) -> None:
        """Say it listens, as the runtime does on its ready fd (or with its ``host``)."""
        self._ready.fire(host)

    def signal(self, sig: int) -> None:
        """Record ``sig``; end by it if it is one of ``dies_on``."""
        self.signals.append(sig)
        if self.status is None and sig in self.dies_on:
            self.exit(signal=sig)

    def say(self, text: str, stream: str = "stdout") -> None:
        """Print a line, as the worker would."""
        self.on_line(stream, text)

    def exit(self, code: int | None = 0, signal: int | None = None) -> None:
        """End it with exit ``code`` (or by ``signal``)."""
        if self.status is None:
            self.pid = None
            self._exit.fire(ExitStatus(None if signal is not None else code, signal))


@implementer(IRemoteProcess)
@attrs.define(eq=False)
class FakeRemoteWorker(FakeWorker):
    """A :class:`FakeWorker` that runs elsewhere: :meth:`located` says where it listens."""

    step: str | None = None
    node: str | None = None

    def located(self, host: str, port: int, step: str | None) -> Deferred[None]:
        """See :meth:`IRemoteProcess.located`: any place is believed."""
        if not self._ready.fired:
            self.step = step
            self.listen(host)
        return succeed(None)


@implementer(ILauncher)
class FakeLauncher:
    """
    A launcher that starts :class:`FakeWorker` records (``spawned``, in
    order). Modules in ``unknown`` can't run; ports in ``in_use`` are held
    by strangers; ``fail_spawn`` (an exception) makes the next spawns fail;
    workers of modules in ``remote`` run elsewhere (their address is None);
    ``calls`` records its prepares, reloads and closes.
    """

    def __init__(self) -> None:
        self.spawned: list[FakeWorker] = []
        self.unknown: set[str] = set()
        self.in_use: set[int] = set()
        self.fail_spawn: Exception | None = None
        #: Modules whose workers say where they listen (``worker.listen(host)``).
        self.remote: set[str] = set()
        #: ``(method, modules)`` of each prepare, reload and close, in order.
        self.calls: list[tuple[str, list[str]]] = []

    def check(self, module: str) -> None:
        """See :meth:`ILauncher.check`."""
        if module in self.unknown:
            raise UnknownModule(module)

    def port_in_use(self, module: str, listen_addr: str, port: int) -> bool:
        """See :meth:`ILauncher.port_in_use`: the ports in ``in_use`` are."""
        return port in self.in_use

    def address(self, module: str, listen_addr: str) -> str | None:
        """See :meth:`ILauncher.address`: None for the modules in ``remote``."""
        return None if module in self.remote else reachable(listen_addr)

    def spawn(self, module: str, guid: str, port: int, config: bytes,
              on_line: Callable[[str, str], None], limits: Limits | None = None,
              sockets: Sequence[ListenSocket] = ()) -> FakeWorker:
        """
        See :meth:`ILauncher.spawn` (``limits`` and ``sockets`` are kept on
        the worker: no process).
        """
        if self.fail_spawn is not None:
            raise SpawnFailed(f"could not start {module}: {self.fail_spawn}")
        kind = FakeRemoteWorker if module in self.remote else FakeWorker
        worker = kind(module, guid, port, config, on_line, limits=limits,
                      sockets=tuple(sockets))
        self.spawned.append(worker)
        return worker

    def renew(self, module: str) -> Deferred[None]:
        """See :meth:`ILauncher.renew`: recorded in ``calls``; fires at once."""
        self.calls.append(("renew", [module]))
        return succeed(None)

    def prepare(self, modules: list[str]) -> None:
        """See :meth:`ILauncher.prepare`: recorded in ``calls``."""
        self.calls.append(("prepare", list(modules)))

    def reload(self, modules: list[str]) -> None:
        """See :meth:`ILauncher.reload`: recorded in ``calls``."""
        self.calls.append(("reload", list(modules)))

    def close(self) -> Deferred[None]:
        """See :meth:`ILauncher.close`: recorded in ``calls``; fires at once."""
        self.calls.append(("close", []))
        return succeed(None)

    def latest(self, guid: str) -> FakeWorker:
        """The last worker spawned for job ``guid``."""
        return [w for w in self.spawned if w.guid == guid][-1]


class _Answer:
    """A health check's answer: 200 and ``{"status": "ok", "guid": G}`` (no guid if None)."""

    code = 200

    def __init__(self, guid: str | None):
        named = {"status": "ok"} if guid is None else {"status": "ok", "guid": guid}
        self.body = json.dumps(named).encode()

    def content(self) -> Deferred[bytes]:
        return succeed(self.body)


class FakeHealth:
    """
    A treq-like client answering health checks (``get``) at once: 200 in
    the name of the ``launcher``'s live worker on the URL's port (if a
    :class:`FakeLauncher` is given; else in no name, which any job takes)
    while that port is ``up`` (None: all are); otherwise the connection is
    refused, or, if ``silent``, the check never answers. ``healthy =
    False`` takes every port down.
    ``asked`` holds ``(time, url)`` of each check (the time on the
    reactor it was given, else 0).
    """

    def __init__(self, launcher: FakeLauncher | None = None):
        self.launcher = launcher
        self.up: set[int] | None = None
        self.silent = False
        self.asked: list[tuple[float, str]] = []

    @property
    def healthy(self) -> bool:
        """Whether every port answers."""
        return self.up is None

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self.up = None if value else set()

    def get(self, url: str, timeout: float | None = None, reactor: Any = None,
            **kwargs: Any) -> Deferred[Any]:
        """Answer, refuse or keep quiet, as said above."""
        self.asked.append((reactor.seconds() if reactor is not None else 0.0, url))
        port = urlsplit(url).port or 0
        if self.up is not None and port not in self.up:
            return Deferred() if self.silent else fail(ConnectionRefusedError(url))
        live = [w.guid for w in (self.launcher.spawned if self.launcher else [])
                if w.port == port and w.status is None]
        return succeed(_Answer(live[-1] if live else None))


@attrs.define(eq=False)
class InitiatorOnClock:
    """
    An Initiator (``init``) on ``clock``, launching with ``launcher`` and
    checking health with ``health``; ``events`` are all its job events.
    """

    init: Initiator
    clock: Clock
    launcher: FakeLauncher
    health: FakeHealth
    events: list[JobEvent]

    def states(self, guid: str) -> list[str]:
        """The states job ``guid`` has entered, in order."""
        return [e.name for e in self.events if e.guid == guid and e.kind == "state"]


def initiator_on_clock(config: ConfigLike, guid: str = "init",
                       **kwargs: Any) -> InitiatorOnClock:
    """
    An :class:`InitiatorOnClock` on ``config`` (see
    :func:`~turberfield_twisted.testing.configs.sections_config`: it needs
    the initiator's section ``guid`` with a child port range, and a section
    per module); ``kwargs`` go to the Initiator (``random=``, ``store=`` ...).
    """
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.testing.configs import sections_config

    clock, launcher = Clock(), FakeLauncher()
    health = FakeHealth(launcher)
    init = Initiator(None, guid=guid, cfg=sections_config(config), reactor=clock,
                     launcher=launcher, http=health, **kwargs)
    events: list[JobEvent] = []
    init.subscribe(events.append)
    return InitiatorOnClock(init, clock, launcher, health, events)


verifyClass(IReactorProcess, FakeProcessReactor)
verifyClass(IProcessTransport, FakeProcess)
verifyClass(ILauncher, FakeLauncher)
verifyClass(IWorkerProcess, FakeWorker)
verifyClass(IRemoteProcess, FakeRemoteWorker)

