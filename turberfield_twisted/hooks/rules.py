"""
What a web-hook subscription may be, and how its deliveries are signed:
URLs inside the allow list (IP literals or ``localhost``, no
credentials), event filters, and ``X-Signature`` (HMAC-SHA256 of the
body with the hook's secret).
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from turberfield_twisted.config.names import EVENT_NAME
from turberfield_twisted.config.readers import Network, networks
from turberfield_twisted.errors import Invalid
from turberfield_twisted.jobs.job import EventKind, JobEvent, JobState
from turberfield_twisted.services.model import SERVICE_EVENTS

__all__ = [
    "Address",
    "HookNotAllowed",
    "HookRejected",
    "allowed",
    "check_events",
    "check_url",
    "parse_networks",
    "sign",
    "verify_signature",
]

_MAX_EVENTS = 32


_MAX_URL = 2048


_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class HookRejected(Invalid):
    """A subscription request is malformed (bad URL, bad events): a validation error."""


class HookNotAllowed(HookRejected):
    """A hook's URL points at an address outside the allow list."""


def sign(secret: str, body: bytes) -> str:
    """The ``X-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes, header: str | bytes | None) -> bool:
    """Whether ``header`` is the right ``X-Signature`` of ``body`` (constant time)."""
    if header is None:
        return False
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    given = header.strip().encode("utf-8", "replace")
    return hmac.compare_digest(sign(secret, body).encode("ascii"), given)


#: Networks from a comma or space separated list: the config's reader, kept under this name.
parse_networks = networks


def allowed(address: Address, allow: Iterable[Network]) -> bool:
    """Whether ``address`` is inside one of the ``allow`` networks (never 0.0.0.0 or multicast)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast:
        return False
    return any(address in network for network in allow)


def check_url(url: Any, allow: Iterable[Network]) -> str:
    """
    ``url``, stripped, if it is an http(s) URL without credentials whose
    host is an IP literal inside ``allow``, or ``localhost`` (if loopback
    is allowed). Raise :class:`HookNotAllowed` for an address outside
    ``allow``, :class:`HookRejected` for anything else wrong.
    """
    allow = tuple(allow)
    if not isinstance(url, str) or not url.strip():
        raise HookRejected("url must be a non-empty string")
    url = url.strip()
    if len(url) > _MAX_URL or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise HookRejected("url is too long or holds spaces or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise HookRejected("url is malformed") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise HookRejected("url must be http or https")
    if parts.username is not None or parts.password is not None:
        raise HookRejected("url must not hold credentials")
    if not host:
        raise HookRejected("url has no host")
    if host == "localhost":
        if not any(allowed(address, allow) for address in _LOOPBACK):
            raise HookNotAllowed("localhost is not in the hook allow list")
        return url
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise HookRejected("url host must be an IP address or localhost") from None
    if not allowed(address, allow):
        raise HookNotAllowed(f"address {address} is not in the hook allow list")
    return url


#: What a hook may subscribe to besides a job state's name.
EVERYTHING, WORKER_PREFIX, SERVICE_PREFIX = "*", "worker:", "service:"


def event_filter_matches(name: str, event: JobEvent) -> bool:
    """
    Whether filter ``name`` (a state, ``*``, ``worker:*``, ``worker:NAME``,
    ``service:*`` or ``service:EVENT``) takes ``event``.
    """
    if name == EVERYTHING:
        return True
    if event.kind is EventKind.WORKER:
        return name in (f"{WORKER_PREFIX}*", WORKER_PREFIX + event.name)
    if event.kind is EventKind.SERVICE:
        return name in (f"{SERVICE_PREFIX}*", SERVICE_PREFIX + event.name)
    return name == event.name


def _allowed(event: Any, states: builtins.list[str]) -> bool:
    if not isinstance(event, str):
        return False
    if event in (EVERYTHING, *states, f"{SERVICE_PREFIX}*"):
        return True
    if event.startswith(SERVICE_PREFIX):
        return event[len(SERVICE_PREFIX):] in SERVICE_EVENTS
    name = event[len(WORKER_PREFIX):] if event.startswith(WORKER_PREFIX) else None
    return name is not None and (name == "*" or EVENT_NAME.accepts(name))


def check_events(events: Any) -> builtins.list[str]:
    """
    ``events`` without repeats, if it is a list of up to 32 filters: ``*``,
    a job state's name, ``worker:*``, ``worker:NAME``, ``service:*`` or
    ``service:EVENT`` (one of :data:`~.services.model.SERVICE_EVENTS`);
    else HookRejected saying what is allowed.
    """
    if not isinstance(events, builtins.list | tuple) or not events:
        raise HookRejected("events must be a non-empty list of event names")
    if len(events) > _MAX_EVENTS:
        raise HookRejected(f"at most {_MAX_EVENTS} events per hook")
    states = [state.value for state in JobState]
    for event in events:
        if not _allowed(event, states):
            shown = repr(event[:40]) if isinstance(event, str) else "a non-string"
            raise HookRejected(
                f"unknown event {shown}: allowed are '*', the job states"
                f" ({', '.join(states)}), 'worker:*' and 'worker:NAME' for a worker's"
                f" own events, 'service:*' and 'service:EVENT'"
                f" ({', '.join(sorted(SERVICE_EVENTS))})")
    return builtins.list(dict.fromkeys(events))
