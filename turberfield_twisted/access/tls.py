"""
The control API's listening endpoint, checked before the daemon starts:
TLS through Twisted's ``ssl:`` endpoint, plain listening only on
loopback unless the operator says ``insecure_listen = true``; and the TLS
pieces the daemon's clients need (a CA to trust).

Twisted's ``ssl:`` endpoint string takes ``privateKey``, ``certKey``,
``extraCertChain``, ``sslmethod`` and ``dhParameters``, and nothing that
asks for a client's certificate; so with ``tls_client_ca`` set,
:func:`server_endpoint` builds the ``CertificateOptions`` itself from the
same files, with that CA as the trust root (a trust root makes the server
ask for a certificate it signed and refuse the handshake without one:
``requireCertificate`` is true by default, and Twisted takes no other
value with a trust root), on the same
``SSL4ServerEndpoint`` the string would give.

``twisted.internet.ssl`` (and with it pyOpenSSL) is imported only inside
the functions that need it, so a daemon on plain loopback never loads it.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorSSL, IStreamServerEndpoint
    from twisted.internet.ssl import Certificate

__all__ = [
    "Endpoint",
    "InsecureListen",
    "check_listen",
    "load_ca",
    "parse_endpoint",
    "server_endpoint",
    "tls_wanted",
]


class InsecureListen(ValueError):
    """The API would listen off loopback without TLS, and the operator did not say so."""


@attrs.frozen
class Endpoint:
    """An endpoint string, split: its ``kind``, positional ``args`` and keyword ``options``."""

    kind: str
    args: tuple[str, ...]
    options: dict[str, str]

    @property
    def tls(self) -> bool:
        """Whether it serves TLS."""
        return self.kind == "ssl"

    @property
    def interface(self) -> str:
        """The address it binds: every one (``''`` or ``::``) unless it says ``interface=``."""
        default = "::" if self.kind == "tcp6" else ""
        return self.options.get("interface", default)


def tls_wanted(listen: str, *cas: str | None) -> bool:
    """
    Whether a daemon listening on endpoint ``listen`` with these CAs (for
    web-hook receivers, to hand workers: ``hook_ca``, ``tls_ca``,
    ``tls_client_ca``) asks for TLS. Without, TLS is not loaded until a
    client meets an ``https`` URL (:mod:`~turberfield_twisted.tlsgate`).
    """
    return parse_endpoint(listen).tls or any(cas)


def parse_endpoint(text: str) -> Endpoint:
    """Split an endpoint string as Twisted does: ``:`` separates, ``\\`` escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    kind, *rest = parts
    args = tuple(part for part in rest if "=" not in part)
    options = dict(part.split("=", 1) for part in rest if "=" in part)
    return Endpoint(kind.strip().lower(), args, options)


def _is_loopback(interface: str) -> bool:
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def check_listen(text: str, insecure_listen: bool, client_ca: str | None = None) -> str | None:
    """
    Check the API's endpoint ``text``: raise :class:`InsecureListen` (one
    line, naming ``insecure_listen``) if it listens off loopback without
    TLS and ``insecure_listen`` is false; return a warning to log at each
    start if it does so with ``insecure_listen`` true, else None. A
    ``unix:`` socket is local. ``client_ca`` needs an ``ssl:`` endpoint.
    """
    endpoint = parse_endpoint(text)
    if client_ca and not endpoint.tls:
        raise InsecureListen(f"tls_client_ca is set but the API's endpoint {text!r} is not"
                             " ssl: (give --listen ssl:PORT:privateKey=KEY:certKey=CERT)")
    if endpoint.tls or endpoint.kind == "unix":
        return None
    if endpoint.kind in ("tcp", "tcp6") and _is_loopback(endpoint.interface):
        return None
    where = endpoint.interface or "every address"
    if not insecure_listen:
        raise InsecureListen(
            f"refusing to serve the control API without TLS on {where} ({text}): tokens would"
            " cross the network in clear; listen on ssl:PORT:privateKey=KEY:certKey=CERT, or"
            " on 127.0.0.1, or set insecure_listen = true in the initiator's section")
    return (f"insecure_listen = true: the control API serves plain HTTP on {where} ({text});"
            " tokens cross the network in clear")


def load_ca(path: str) -> Certificate:
    """The CA certificate in the PEM file at ``path``."""
    from twisted.internet.ssl import Certificate

    with open(path, "rb") as pem:
        return Certificate.loadPEM(pem.read())


def server_endpoint(reactor: IReactorSSL, text: str, client_ca: str) -> IStreamServerEndpoint:
    """
    The ``ssl:`` endpoint ``text``, asking every client for a certificate
    signed by the CA in the PEM file ``client_ca`` and refusing one without.
    """
    import re

    from twisted.internet.endpoints import SSL4ServerEndpoint
    from twisted.internet.ssl import (
        Certificate,
        CertificateOptions,
        PrivateCertificate,
        trustRootFromCertificates,
    )

    endpoint = parse_endpoint(text)
    if not endpoint.tls or not endpoint.args:
        raise InsecureListen(f"tls_client_ca needs an ssl:PORT:... endpoint, not {text!r}")
    options = endpoint.options
    key_path = options.get("privateKey", "server.pem")
    with open(options.get("certKey", key_path), "rb") as cert, open(key_path, "rb") as key:
        private = PrivateCertificate.loadPEM(cert.read() + b"\n" + key.read())
    chain = None
    if "extraCertChain" in options:
        with open(options["extraCertChain"], "rb") as extra:
            found = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                               extra.read(), flags=re.DOTALL)
        chain = [Certificate.loadPEM(pem).original for pem in found]
    context = CertificateOptions(
        privateKey=private.privateKey.original, certificate=private.original,
        extraCertChain=chain, trustRoot=trustRootFromCertificates([load_ca(client_ca)]))
    return SSL4ServerEndpoint(reactor, int(endpoint.args[0]), context,
                              backlog=int(options.get("backlog", 50)),
                              interface=options.get("interface", ""))
