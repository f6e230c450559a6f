"""
What the relay changes on the way through: the path and headers of a
request going to a worker (:func:`upstream_path`, :func:`relay_header_pairs`),
and the ``Location`` of its answer coming back (:func:`under_proxy`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes, urljoin, urlsplit

from turberfield_twisted.errors import Invalid

__all__ = ["NOT_RELAYED", "PREFIX", "relay_header_pairs", "under_proxy", "upstream_path"]

#: Request headers never relayed to a worker (lower case): hop-by-hop ones, the
#: caller's credentials and what the relay's own client sets.
NOT_RELAYED = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
    b"host", b"authorization", b"content-length", b"expect", b"accept-encoding",
})


#: What comes between a job's guid and the worker's own path.
PREFIX = b"proxy"


#: A byte that is not printable ASCII (nor a space).
_NOT_PLAIN = re.compile(rb"[^\x21-\x7e]")


def upstream_path(request: Any) -> bytes:
    """The raw path after ``/jobs/{guid}/proxy``, with its query string."""
    path: bytes = request.path
    query = request.uri.partition(b"?")[2]
    rest = path.split(b"/", 4)[4] if path.count(b"/") >= 4 else b""
    if b"." in rest or b"%" in rest:  # a dot, or an escaped one
        for segment in rest.split(b"/"):
            if unquote_to_bytes(segment) in (b".", b".."):
                raise Invalid("the path may not hold . or .. segments")
    if _NOT_PLAIN.search(rest) or _NOT_PLAIN.search(query):
        raise Invalid("the path or query is not plain ASCII")
    return b"/" + rest + (b"?" + query if query else b"")


def relay_header_pairs(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """
    A request's ``headers`` (raw ``(name, value)`` pairs, in order) less
    those never relayed and those its Connection header names.
    """
    pairs = list(headers)
    named = {token.strip().lower() for name, value in pairs if name.lower() == b"connection"
             for token in value.split(b",")}
    kept = []
    for name, value in pairs:
        lower = name.lower()
        if lower in NOT_RELAYED or lower in named or lower.startswith(b"proxy-"):
            continue
        kept.append((name, value))
    return kept


#: What stays as it is in a relayed Location: reserved and unreserved ASCII, and escapes.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def under_proxy(location: bytes, guid: str, url: bytes,
                mount: bytes | None = None) -> bytes | None:
    """
    ``location``, from the worker asked for ``url``, as a path under job
    ``guid``'s proxy (or under ``mount``, if given: where the worker's
    paths are on the API), or None if it leaves the worker's origin
    (scheme, host and port of ``url``) or holds an escaped ``.`` or ``..``
    segment.
    """
    asked = url.decode("ascii")
    try:
        found = urlsplit(urljoin(asked, location.decode("latin-1")))
        base = urlsplit(asked)
        same = (found.scheme.lower() == base.scheme and found.hostname == base.hostname
                and (found.port or 80) == (base.port or 80))
    except ValueError:  # a port out of range, a bad IPv6 literal
        return None
    if not same:
        return None
    path = found.path or "/"
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        return None
    rest = quote(path, safe=_URL_SAFE)
    if found.query:
        rest += "?" + quote(found.query, safe=_URL_SAFE)
    if found.fragment:
        rest += "#" + quote(found.fragment, safe=_URL_SAFE)
    if mount is not None:
        return mount + rest.encode("ascii")
    return f"/jobs/{quote(guid, safe='')}/{PREFIX.decode()}{rest}".encode("ascii")
