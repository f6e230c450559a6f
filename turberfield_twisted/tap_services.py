"""
The services ``twistd proactor`` runs (:func:`~turberfield_twisted.tap.makeService`
puts them together): the control API's listener, the state dir and its
store kept to the last, the signals (SIGHUP reloads; systemd hears each
step), and the order they stop in.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, cast

from twisted.application.service import IService, MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IReactorSSL
from twisted.logger import Logger
from twisted.python.failure import Failure

from turberfield_twisted.access.tls import parse_endpoint
from turberfield_twisted.contract import API_FILE
from turberfield_twisted.daemon.notify import sd_notify
from turberfield_twisted.daemon.statedir import StateDir
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.daemon.store_records import HookRecord
from turberfield_twisted.errors import ConfigError, DaemonStopping
from turberfield_twisted.launch.reactor import IDaemonReactor

if TYPE_CHECKING:  # imported when the service is made (http's import installs the reactor)
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.daemon.reconcile import Reconciler
    from turberfield_twisted.hooks.dispatcher import HookDispatcher
    from turberfield_twisted.http.api import ControlAPI

__all__ = ["Closing", "ControlService", "InOrder", "Kept", "Refusing", "Signals",
           "with_backlog"]


#: Endpoint kinds that take a ``backlog`` (Twisted's stream server endpoints).
_BACKLOGGED = frozenset({"tcp", "tcp6", "ssl", "unix"})


def with_backlog(endpoint: str, backlog: int) -> str:
    """``endpoint`` with ``:backlog=N`` added, if it is of a kind that takes one and says none."""
    kind = endpoint.split(":", 1)[0].strip().lower()
    if kind in _BACKLOGGED and not re.search(r"(^|:)backlog=", endpoint):
        return f"{endpoint}:backlog={backlog}"
    return endpoint


class ControlService(Service):
    """Listens with the control API's site and writes where it listens."""

    log = Logger()

    def __init__(self, reactor: IDaemonReactor, endpoint_text: str, api: ControlAPI,
                 initiator: Initiator, state: StateDir, backlog: int,
                 client_ca: str = "", worker_ca: bytes | None = None):
        from twisted.internet.endpoints import serverFromString

        self._reactor = reactor
        self._endpoint_text = endpoint_text  # as the operator gave it, for messages
        self._tls = parse_endpoint(endpoint_text).tls
        self._worker_ca = worker_ca if worker_ca is not None else b""
        try:
            if client_ca:
                from turberfield_twisted.access.tls import server_endpoint

                self._endpoint = server_endpoint(cast(IReactorSSL, reactor),  # asyncio's has it
                                                 with_backlog(endpoint_text, backlog), client_ca)
            else:
                self._endpoint = serverFromString(reactor, with_backlog(endpoint_text, backlog))
        except Exception as exc:  # a file it names can't be read, a key that is no key ...
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, OSError) and exc.strerror:
                reason = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
            raise SystemExit(f"proactor: cannot serve the control API on {endpoint_text}:"
                             f" {reason}") from None
        self._api = api
        self._initiator = initiator
        self._state = state
        self._port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        d = self._endpoint.listen(self._api.site())
        failures: list[Failure] = []
        d.addCallbacks(self._listening, failures.append)
        if failures:
            raise SystemExit(f"proactor: cannot listen on {self._endpoint_text}: "
                             f"{failures[0].getErrorMessage()} (another daemon there? give"
                             " this one another address with --listen, e.g. --listen"
                             " tcp:8081:interface=127.0.0.1, or tcp:0:interface=127.0.0.1 for"
                             " any free port: proactor finds it in the state dir)")
        Service.privilegedStartService(self)

    def _listening(self, port: IListeningPort) -> None:
        self._port = port
        host = cast(IPv4Address | IPv6Address, port.getHost())  # a tcp: or tcp6: endpoint
        addr = f"[{host.host}]" if ":" in host.host else host.host
        url = f"{'https' if self._tls else 'http'}://{addr}:{host.port}"
        self._initiator.listening(host.host, host.port,
                                  self._worker_ca if self._tls else None)
        self._state.write_private(API_FILE, url + "\n")
        self.log.info("control API listening on {url}", url=url)

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
        return None


class Refusing(Service):
    """
    Stopped first: the initiator hears that the daemon stops before any
    service does, so a request on a connection opened before is refused
    (503) rather than half done while the jobs stop.
    """

    def __init__(self, initiator: Initiator):
        self._initiator = initiator

    def stopService(self) -> None:
        self._initiator.begin_stopping()
        Service.stopService(self)


class Closing(Service):
    """Calls ``close`` when stopped."""

    def __init__(self, close: Callable[[], Deferred[None]]):
        self._close = close

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self._close()


class InOrder(MultiService):
    """
    A MultiService that stops its services one at a time, the last started
    first, each once the one before it has stopped (MultiService stops them
    all at once): jobs' last events are kept before the store closes.
    """

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        d: Deferred[object] = succeed(None)
        for service in reversed(list(self)):
            d.addBoth(_then_stop, service)
        return d.addBoth(_then_stop, None)


def _then_stop(result: object, service: IService | None) -> Deferred[None] | None:
    """Stop ``service`` once the one before it has stopped, however that went."""
    if isinstance(result, Failure):
        Logger().failure("a service did not stop cleanly", failure=result)
    return service.stopService() if service is not None else None


class Kept(Service):
    """
    The state dir, its store and the web-hooks: the hooks kept (``kept``,
    as read from the store at start) are restored first thing (before any
    job event), and closed last, then the store.
    """

    def __init__(self, state: StateDir, store: Store, hooks: HookDispatcher,
                 kept: list[HookRecord], before_close: Callable[[], None] = lambda: None):
        self._state = state
        self._store = store
        self._hooks = hooks
        self._kept = kept
        self._before_close = before_close

    def startService(self) -> None:
        Service.startService(self)
        self._state.note_pid()  # twistd may have forked since the lock was taken
        kept, self._kept = self._kept, []
        self._hooks.restore(kept)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        d = self._hooks.close()
        d.addBoth(lambda _: self._before_close())
        d.addBoth(lambda _: self._store.close())
        return d


class Signals(Service):
    """
    SIGHUP reloads the config (logged; a bad file changes nothing); systemd
    is told READY=1 once the declared jobs have started, RELOADING=1 and
    READY=1 around a reload, STOPPING=1 as the daemon stops.
    """

    log = Logger()

    def __init__(self, reactor: IDaemonReactor, reconciler: Reconciler):
        self._reactor = reactor
        self._reconciler = reconciler

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        signal.signal(signal.SIGHUP, self._hangup)  # before the reactor runs

    def startService(self) -> None:
        Service.startService(self)
        self._reconciler.settled().addCallback(self._ready)

    def _ready(self, _: None) -> None:
        self.log.info("ready: the control API listens and the declared jobs have started")
        sd_notify("READY=1\nSTATUS=ready")

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self.reload)

    def reload(self) -> None:
        """Reload the config as SIGHUP asks; log what changed, or why nothing did."""
        self.log.info("SIGHUP: reloading the config")
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            self._reconciler.reload()
        except DaemonStopping:
            self.log.info("SIGHUP: the daemon is stopping: not reloaded")
        except ConfigError as exc:
            self.log.error("SIGHUP: the config is not reloaded: {error}", error=str(exc))
        except Exception:
            self.log.failure("SIGHUP: the config is not reloaded")
        sd_notify("READY=1")

    def stopService(self) -> None:
        Service.stopService(self)
        sd_notify("STOPPING=1")
