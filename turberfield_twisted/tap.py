"""
``twistd proactor``: Options and makeService.

Run it as ``twistd -n proactor``: the asyncio reactor is installed here if
twistd has not installed one yet. Before anything is written to the state
directory its lock is taken: a second daemon on it exits 1 at once, naming
the pid of the one that holds it. SIGHUP reloads the config; under
systemd (``NOTIFY_SOCKET``) the daemon says READY=1 once its API listens
and its declared jobs have started.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable
from configparser import ConfigParser
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, cast

from twisted.application.service import IService, MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IReactorSSL
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from turberfield_twisted.access.tls import InsecureListen, check_listen, parse_endpoint
from turberfield_twisted.config.logs import watched
from turberfield_twisted.config.settings import check_config
from turberfield_twisted.configtext import make_config, parse_config
from turberfield_twisted.contract import API_FILE, TOKEN_FILE, default_state_dir
from turberfield_twisted.daemon.notify import sd_notify
from turberfield_twisted.daemon.statedir import StateDir
from turberfield_twisted.daemon.store import HookRecord, Store
from turberfield_twisted.errors import ConfigError, DaemonStopping, StateDirError, StoreFailed
from turberfield_twisted.launch.reactor import IDaemonReactor

if TYPE_CHECKING:  # imported when the service is made (http's import installs the reactor)
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.daemon.reconcile import Reconciler
    from turberfield_twisted.hooks.dispatcher import HookDispatcher
    from turberfield_twisted.http.api import ControlAPI

__all__ = ["Options", "makeService", "with_backlog"]

HOW_TO_RUN = "run it on the asyncio reactor: twistd --reactor=asyncio -n proactor"


def load_config(path: str | None) -> ConfigParser:
    """The embedded default config, with the file at ``path`` read over it."""
    cfg = make_config()
    default = resources.files("turberfield_twisted.data").joinpath("default.cfg")
    parse_config(default.read_text("utf-8"), source="default.cfg", into=cfg)
    if path:
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"cannot read it ({reason})", path) from None
        parse_config(text, source=path, into=cfg)
    return cfg


class Options(usage.Options):
    """Command line options of ``twistd proactor``."""

    synopsis = "[--config PATH] [--listen ENDPOINT] [--state-dir DIR] [--guid NAME]"
    longdesc = (
        "Start the initiator: a JSON control API (loopback only by default) that launches "
        "Python modules as HTTP worker processes and supervises them. The admin token is "
        "written to <state-dir>/admin.token (mode 0600); jobs, web-hooks and undelivered "
        "events are kept in <state-dir>/proactor.db. One daemon per state dir. SIGHUP "
        "reloads the config."
    )
    optParameters = [
        ["config", "c", None, "A config file read over the embedded default."],
        ["listen", "l", None,
         "Endpoint of the control API (default: tcp:<listen_port>:interface=<listen_addr> "
         "from the initiator's section, i.e. tcp:8080:interface=127.0.0.1); its backlog is "
         "the section's listen_backlog (1024) unless the endpoint says backlog=N."],
        ["state-dir", "s", None, f"Where admin.token, api.url and the store go (default: "
                                 f"{default_state_dir()}; created 0700)."],
        ["guid", "g", "proactor", "The initiator's section in the config."],
    ]

    def postOptions(self) -> None:
        try:
            self["cfg"] = load_config(self["config"])
            self["settings"] = check_config(self["cfg"], self["guid"])
        except ConfigError as exc:
            # Not a usage error (twistd would print its usage): one line, exit 1.
            raise SystemExit(f"proactor: bad config: {exc}") from None
        own = self["settings"].initiator
        if self["listen"] is None:
            kind = "tcp6" if ":" in own.listen_addr else "tcp"
            host = own.listen_addr.replace(":", "\\:")  # endpoint strings escape colons
            self["listen"] = f"{kind}:{own.listen_port}:interface={host}"
        try:
            self["listen_warning"] = check_listen(self["listen"], own.insecure_listen,
                                                  own.tls_client_ca or None)
        except InsecureListen as exc:
            raise SystemExit(f"proactor: {exc}") from None
        self["state-dir"] = Path(self["state-dir"] or default_state_dir())


#: Endpoint kinds that take a ``backlog`` (Twisted's stream server endpoints).
_BACKLOGGED = frozenset({"tcp", "tcp6", "ssl", "unix"})


def with_backlog(endpoint: str, backlog: int) -> str:
    """``endpoint`` with ``:backlog=N`` added, if it is of a kind that takes one and says none."""
    kind = endpoint.split(":", 1)[0].strip().lower()
    if kind in _BACKLOGGED and not re.search(r"(^|:)backlog=", endpoint):
        return f"{endpoint}:backlog={backlog}"
    return endpoint


class _ControlService(Service):
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


class _Refusing(Service):
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


class _Closing(Service):
    """Calls ``close`` when stopped."""

    def __init__(self, close: Callable[[], Deferred[None]]):
        self._close = close

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self._close()


class _InOrder(MultiService):
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


class _Kept(Service):
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


class _Signals(Service):
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


def _open_state(path: Path, sync: str) -> tuple[StateDir, Store, list[HookRecord]]:
    """
    The state dir, locked, its store, readable, and the web-hooks it keeps
    (read once, here: restored from these): SystemExit with one line if any
    can't be had (a daemon that would lose its kept jobs does not start).
    """
    try:
        state = StateDir.open(path)
    except StateDirError as exc:
        raise SystemExit(f"proactor: {exc}") from None
    try:
        state.lock()
        store = Store.open(state, sync)
    except (StateDirError, StoreFailed) as exc:
        state.close()
        raise SystemExit(f"proactor: {exc}") from None
    try:
        store.jobs()  # the jobs can be read (the reconciler reads them again at start)
        hooks = store.hooks()
    except StoreFailed as exc:
        store.close()
        state.close()
        raise SystemExit(f"proactor: {exc} (move it away to start without it)") from None
    return state, store, hooks


def _read_pem(path: str, key: str) -> bytes:
    """The PEM file at ``path`` (the config's ``key``); SystemExit with one line if unreadable."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SystemExit(f"proactor: {key}: cannot read {path}: {exc.strerror}") from None


def _asyncio_reactor() -> IDaemonReactor:
    """The asyncio reactor: installed here if none is yet; SystemExit if another one is."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise SystemExit(f"proactor: the {type(reactor).__name__} is running; {HOW_TO_RUN}")
    return cast(IDaemonReactor, reactor)  # it provides each interface that one extends


def makeService(options: Options) -> IService:
    """The initiator with its control API, on the asyncio reactor."""
    import secrets

    reactor = _asyncio_reactor()
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.daemon.logservice import disk_logs
    from turberfield_twisted.daemon.metrics import Metrics
    from turberfield_twisted.daemon.reconcile import Reconciler
    from turberfield_twisted.hooks.dispatcher import HookDispatcher
    from turberfield_twisted.http.api import ControlAPI

    cfg = options["cfg"]
    guid = options["guid"]
    own = options["settings"].initiator
    state, store, kept_hooks = _open_state(options["state-dir"], own.store_sync)
    initiator = Initiator(options, cfg=cfg, settings=options["settings"],  # checked already
                          guid=guid, reactor=reactor, store=store)
    disk = disk_logs(reactor, initiator, state.path, own.logs)  # None: log_dir = off
    job_logs = disk.logs if disk is not None else None
    for warning in options["settings"].warnings:  # keys that look like typos
        Logger().warn("config: {warning}", warning=warning)
    token = cfg.get(guid, "admin_token", fallback="") or secrets.token_urlsafe(32)
    state.write_private(TOKEN_FILE, token + "\n")
    Logger().info("admin token written to {path}", path=str(state.path / TOKEN_FILE))
    if options["listen_warning"]:
        Logger().warn("{warning}", warning=options["listen_warning"])
    from turberfield_twisted.daemon.access_store import open_access

    try:
        gate, trail, book = open_access(reactor, state, store, token, own)
    except (StateDirError, StoreFailed) as exc:
        raise SystemExit(f"proactor: {exc}") from None
    hooks_http = initiator.http
    if own.hook_ca:
        from turberfield_twisted.worker.parent import make_http

        hooks_http, _ = make_http(reactor, ca_pem=_read_pem(own.hook_ca, "hook_ca"))
    hooks = HookDispatcher(reactor, hooks_http, allow=own.hook_allow, store=store)
    initiator.subscribe(hooks.publish)
    reconciler = Reconciler(initiator, lambda: load_config(options["config"]),
                            kept_in=str(store.path))
    api = ControlAPI(initiator, token, reactor, hooks=hooks, max_body=own.max_body,
                     relay_timeout=own.relay_timeout, read_timeout=own.read_timeout,
                     metrics=Metrics(initiator, hooks, services=initiator.services,
                                     logs=job_logs),
                     reload=reconciler.reload, gate=gate, audit=trail, logs=job_logs)
    # Started in this order (the API listens first, before any of them
    # starts); stopped in reverse, one after another: the initiator refuses
    # every change from then on (503), systemd hears STOPPING=1, the API
    # stops listening, every job is stopped (their last events are queued
    # and kept), then the hooks close and the store.
    top = _InOrder()
    _Kept(state, store, hooks, kept_hooks, book.stop).setServiceParent(top)
    _Closing(api.close).setServiceParent(top)
    if disk is not None:  # its files close once the jobs have stopped
        disk.setServiceParent(top)
    initiator.setServiceParent(top)
    worker_ca = _read_pem(own.tls_ca, "tls_ca") if own.tls_ca else None
    _ControlService(reactor, options["listen"], api, initiator, state, own.listen_backlog,
                    own.tls_client_ca, worker_ca).setServiceParent(top)
    reconciler.setServiceParent(top)
    _Signals(reactor, reconciler).setServiceParent(top)
    if watched(options["settings"].modules):  # a module says watch = true
        from turberfield_twisted.daemon.watch import Watcher

        Watcher(reactor, initiator).setServiceParent(top)
    _Refusing(initiator).setServiceParent(top)
    return top
