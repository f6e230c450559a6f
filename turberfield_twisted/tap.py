"""
``twistd proactor``: Options and makeService.

Run it as ``twistd -n proactor``: the asyncio reactor is installed here if
twistd has not installed one yet (pyOpenSSL kept out unless TLS is asked
for). Before anything is written to the state directory its lock is taken:
a second daemon on it exits 1 at once, naming the pid of the one that holds
it. SIGHUP reloads the config; under systemd (``NOTIFY_SOCKET``) the daemon
says READY=1 once its API listens and its declared jobs have started.
"""

from __future__ import annotations

import sys
from configparser import ConfigParser
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, cast

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from turberfield_twisted.access.tls import InsecureListen, check_listen, tls_wanted
from turberfield_twisted.config.logs import watched
from turberfield_twisted.config.settings import check_config
from turberfield_twisted.configtext import make_config, parse_config
from turberfield_twisted.contract import TOKEN_FILE, default_state_dir
from turberfield_twisted.daemon.statedir import StateDir
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.daemon.store_records import HookRecord
from turberfield_twisted.errors import ConfigError, StateDirError, StoreFailed
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.tap_services import (
    Closing,
    ControlService,
    InOrder,
    Kept,
    Refusing,
    Signals,
    with_backlog,
)
from turberfield_twisted.tlsgate import defer_tls

if TYPE_CHECKING:  # imported when the service is made (http's import installs the reactor)
    pass

# with_backlog is re-exported: its home is :mod:`.tap_services`.
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

    own = options["settings"].initiator
    if not tls_wanted(options["listen"], own.hook_ca, own.tls_ca, own.tls_client_ca):
        defer_tls()  # before the reactor (twisted.internet.tcp) is imported
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
    api.journal.keep = own.events_keep  # what GET /events keeps for a client that resumes
    # Started in this order (the API listens first, before any of them
    # starts); stopped in reverse, one after another: the initiator refuses
    # every change from then on (503), systemd hears STOPPING=1, the API
    # stops listening, every job is stopped (their last events are queued
    # and kept), then the hooks close and the store.
    top = InOrder()
    Kept(state, store, hooks, kept_hooks, book.stop).setServiceParent(top)
    Closing(api.close).setServiceParent(top)
    if disk is not None:  # its files close once the jobs have stopped
        disk.setServiceParent(top)
    initiator.setServiceParent(top)
    worker_ca = _read_pem(own.tls_ca, "tls_ca") if own.tls_ca else None
    ControlService(reactor, options["listen"], api, initiator, state, own.listen_backlog,
                    own.tls_client_ca, worker_ca).setServiceParent(top)
    reconciler.setServiceParent(top)
    Signals(reactor, reconciler).setServiceParent(top)
    if watched(options["settings"].modules):  # a module says watch = true
        from turberfield_twisted.daemon.watch import Watcher

        Watcher(reactor, initiator).setServiceParent(top)
    Refusing(initiator).setServiceParent(top)
    return top
