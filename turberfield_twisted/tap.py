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
from .settings import check_config
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
            self["settings"] = check_config(self["cfg"], self["guid"])
        except ConfigError as exc:
            raise usage.UsageError(f"bad config: {exc}") from None
        own = self["settings"].initiator
        if self["listen"] is None:
            kind = "tcp6" if ":" in own.listen_addr else "tcp"
            host = own.listen_addr.replace(":", "\\:")  # endpoint strings escape colons
            self["listen"] = f"{kind}:{own.listen_port}:interface={host}"
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
        self._initiator.listening(host.host, host.port)
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
    from .initiator import Initiator
    from .metrics import Metrics

    cfg = options["cfg"]
    guid = options["guid"]
    own = options["settings"].initiator
    initiator = Initiator(options, cfg=cfg, guid=guid, reactor=reactor)
    token = cfg.get(guid, "admin_token", fallback="") or secrets.token_urlsafe(32)
    state_dir: Path = options["state-dir"]
    write_private(state_dir / TOKEN_FILE, token + "\n")
    Logger().info("admin token written to {path}", path=str(state_dir / TOKEN_FILE))
    hooks = HookDispatcher(reactor, initiator.http, allow=[str(n) for n in own.hook_allow])
    initiator.subscribe(hooks.publish)
    api = ControlAPI(initiator, token, reactor, hooks=hooks, max_body=own.max_body,
                     relay_timeout=own.relay_timeout, metrics=Metrics(initiator, hooks))
    # Stopped in reverse: the API stops listening, then every job is
    # stopped (their last events still go out), then the hooks close.
    top = MultiService()
    _Closing(hooks.close).setServiceParent(top)
    _Closing(api.close).setServiceParent(top)
    initiator.setServiceParent(top)
    _ControlService(reactor, options["listen"], api, initiator, state_dir).setServiceParent(top)
    return top
