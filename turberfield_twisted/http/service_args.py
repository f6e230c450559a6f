"""
What a ``/services`` request may say: its body and query arguments, read
and checked before any service is touched. Each reader answers what the
route needs or raises :class:`~turberfield_twisted.errors.Invalid` (400)
naming the argument and what it must be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.web.iweb import IRequest

from turberfield_twisted.config.names import SESSION
from turberfield_twisted.config.readers import BadValue
from turberfield_twisted.config.services import SPREADS, listen_address
from turberfield_twisted.errors import Invalid
from turberfield_twisted.http.args import MAX_WAIT
from turberfield_twisted.http.web import query_arg, read_object
from turberfield_twisted.services.model import ServiceSpec

__all__ = ["SERVICE_WAITS", "create_args", "rollout_args", "scale_args", "service_wait_args",
           "whole"]

_CREATE_KEYS = frozenset({"name", "module", "instances", "listen", "surge", "max_unavailable",
                          "session", "config", "spread"})


_SCALE_KEYS = frozenset({"instances"})


_ROLLOUT_KEYS = frozenset({"module", "config"})


#: What ``GET /services/{name}?wait=`` may wait for: every instance ready and no
#: rollout running, or only the rollout's end.
SERVICE_WAITS = ("ready", "rollout")


def whole(value: object, key: str) -> int:
    """``value`` as a whole number (JSON's ``3.0`` is one), or :class:`Invalid` naming ``key``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"{key} must be a whole number")
    return value


def _whole(body: Mapping[str, Any], key: str, default: int) -> int:
    return whole(body.get(key, default), key)


def _config(value: Any) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise Invalid("config must be an object of key: value")
    return value


def create_args(request: IRequest, max_body: int) -> tuple[ServiceSpec, dict[str, Any] | None]:
    """
    ``POST /services``: ``{"name", "module", "listen"?, "instances"?, "surge"?,
    "max_unavailable"?, "session"?, "config"?, "spread"?}``, as a spec (its
    overrides still to be checked against the module: the second value).
    No ``listen``: a service of a module Slurm runs (the host says whether
    its module may have one).
    """
    body = read_object(request, max_body, _CREATE_KEYS)
    name, module, listen = body.get("name"), body.get("module"), body.get("listen")
    if not isinstance(name, str) or not name:
        raise Invalid("name must be a non-empty string")
    if not isinstance(module, str) or not module:
        raise Invalid("module must be a non-empty string")
    if isinstance(listen, float) and listen.is_integer():
        listen = int(listen)  # JSON's 8000.0 is a whole number
    host: str | None = None
    port: int | None = None
    if listen is not None:
        if not isinstance(listen, str | int) or isinstance(listen, bool):
            raise Invalid("listen must be PORT, HOST:PORT or [IPV6]:PORT")
        try:
            host, port = listen_address(str(listen))
        except BadValue as exc:
            raise Invalid(f"listen {exc}") from None
    spread = body.get("spread", "nodes")
    if spread not in SPREADS:
        raise Invalid(f"spread must be one of: {', '.join(SPREADS)}")
    if listen is not None and "spread" in body:
        raise Invalid("spread applies only to a service of a module Slurm runs (no listen)")
    session = body.get("session")
    if session is not None and not (isinstance(session, str) and SESSION.accepts(session)):
        raise Invalid("session must be null or a string of at most 256 characters,"
                      " without control characters or '$'")
    spec = ServiceSpec(name=name, module=module, host=host, port=port,
                       instances=_whole(body, "instances", 1), surge=_whole(body, "surge", 1),
                       max_unavailable=_whole(body, "max_unavailable", 0), session=session,
                       spread=spread)
    return spec, _config(body.get("config"))


def scale_args(request: IRequest, max_body: int) -> int:
    """``PATCH /services/{name}``: ``{"instances": N}`` (its range checked by the service)."""
    body = read_object(request, max_body, _SCALE_KEYS)
    if "instances" not in body:
        raise Invalid("instances is required")
    return whole(body["instances"], "instances")


def rollout_args(request: IRequest, max_body: int) -> tuple[str | None, dict[str, Any] | None]:
    """``POST /services/{name}/rollout``: ``{"module"?, "config"?}`` (an empty body too)."""
    raw = request.content.read() if request.content is not None else b""
    if request.content is not None:
        request.content.seek(0)
    if not raw.strip():
        return None, None
    body = read_object(request, max_body, _ROLLOUT_KEYS)
    module = body.get("module")
    if module is not None and (not isinstance(module, str) or not module):
        raise Invalid("module must be a non-empty string")
    return module, _config(body.get("config"))


def service_wait_args(request: IRequest) -> tuple[str, float] | None:
    """``?wait=ready|rollout&timeout=<0..60>`` (default 10 s), or None if no wait was asked."""
    wanted = query_arg(request, b"wait")
    if wanted is None:
        return None
    if wanted not in SERVICE_WAITS:
        raise Invalid(f"wait must be one of: {', '.join(SERVICE_WAITS)}")
    given = query_arg(request, b"timeout")
    try:
        timeout = 10.0 if given is None else float(given)
    except ValueError:
        timeout = -1.0
    if not 0 <= timeout <= MAX_WAIT:
        raise Invalid(f"timeout must be a number of seconds from 0 to {MAX_WAIT:g}")
    return wanted, timeout
