"""
``twistd proactor``: Options and makeService.

Run it as ``twistd -n proactor``: the asyncio reactor is installed here if
twistd has not installed one yet.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from .config import ConfigError, make_config, parse_config
from .state import API_FILE, TOKEN_FILE, default_state_dir, write_private

__all__ = ["Options", "makeService"]

HOW_TO_RUN = "run it on the asyncio reactor: twistd --reactor=asyncio -n proactor"


def load_config(path: str | None) -> Any:
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
        "written to <state-dir>/admin.token (mode 0600)."
    )
    optParameters = [
        ["config", "c", None, "A config file read over the embedded default."],
        ["listen", "l", None,
         "Endpoint of the control API (default: tcp:<listen_port>:interface=<listen_addr> "
         "from the initiator's section, i.e. tcp:8080:interface=127.0.0.1)."],
        ["state-dir", "s", None, f"Where admin.token and api.url go (default: "
                                 f"{default_state_dir()})."],
        ["guid", "g", "proactor", "The initiator's section in the config."],
    ]

    def postOptions(self) -> None:
        try:
            self["cfg"] = load_config(self["config"])
        except ConfigError as exc:
            raise usage.UsageError(f"bad config: {exc}") from None
        if not self["cfg"].has_section(self["guid"]):
            raise usage.UsageError(f"the config has no [{self['guid']}] section")
        own = self["cfg"][self["guid"]]
        if self["listen"] is None:
            self["listen"] = (
                f"tcp:{own.getint('listen_port', 8080)}:"
                f"interface={own.get('listen_addr', '127.0.0.1')}"
            )
        self["state-dir"] = Path(self["state-dir"] or default_state_dir())


class _ControlService(Service):
    """Listens with the control API's site and writes where it listens."""

    log = Logger()

    def __init__(self, reactor: Any, endpoint_text: str, api: Any, initiator: Any,
                 state_dir: Path):
        from twisted.internet.endpoints import serverFromString

        self._reactor = reactor
        self._endpoint_text = endpoint_text
        self._endpoint = serverFromString(reactor, endpoint_text)
        self._api = api
        self._initiator = initiator
        self._state_dir = state_dir
        self._port: Any = None

    def privilegedStartService(self) -> None:
        d = self._endpoint.listen(self._api.site())
        failures: list[Any] = []
        d.addCallbacks(self._listening, failures.append)
        if failures:
            raise SystemExit(f"proactor: cannot listen on {self._endpoint_text}: "
                             f"{failures[0].getErrorMessage()}")
        Service.privilegedStartService(self)

    def _listening(self, port: Any) -> None:
        self._port = port
        host = port.getHost()
        addr = f"[{host.host}]" if ":" in host.host else host.host
        url = f"http://{addr}:{host.port}"
        self._initiator.listen_addr = host.host
        self._initiator.listen_port = host.port
        write_private(self._state_dir / API_FILE, url + "\n")
        self.log.info("control API listening on {url}", url=url)

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
        return None


class _Closing(Service):
    """Calls ``close`` when stopped."""

    def __init__(self, close: Any):
        self._close = close

    def stopService(self) -> Any:
        Service.stopService(self)
        return self._close()


def _asyncio_reactor() -> Any:
    """The asyncio reactor: installed here if none is yet; SystemExit if another one is."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise SystemExit(f"proactor: the {type(reactor).__name__} is running; {HOW_TO_RUN}")
    return reactor


def makeService(options: Options) -> IService:
    """The initiator with its control API, on the asyncio reactor."""
    import secrets

    reactor = _asyncio_reactor()
    from .api import ControlAPI
    from .hooks import HookDispatcher
    from .metrics import Metrics
    from .proactor import Initiator

    cfg = options["cfg"]
    guid = options["guid"]
    own = cfg[guid]
    initiator = Initiator(options, cfg=cfg, guid=guid, reactor=reactor)
    token = own.get("admin_token", "") or secrets.token_urlsafe(32)
    state_dir: Path = options["state-dir"]
    write_private(state_dir / TOKEN_FILE, token + "\n")
    Logger().info("admin token written to {path}", path=str(state_dir / TOKEN_FILE))
    hooks = HookDispatcher(reactor, initiator.http, allow=own.get("hook_allow", "127.0.0.0/8, ::1"))
    initiator.subscribe(hooks.publish)
    api = ControlAPI(
        initiator, token, reactor, hooks=hooks,
        max_body=own.getint("max_body", 1024 * 1024),
        relay_timeout=own.getfloat("relay_timeout", 30.0),
        metrics=Metrics(initiator, hooks),
    )
    # Stopped in reverse: the API stops listening, then every job is
    # stopped (their last events still go out), then the hooks close.
    top = MultiService()
    _Closing(hooks.close).setServiceParent(top)
    initiator.setServiceParent(top)
    _ControlService(reactor, options["listen"], api, initiator, state_dir).setServiceParent(top)
    return top
