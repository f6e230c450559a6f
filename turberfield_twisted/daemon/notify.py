"""
The systemd notification protocol (``sd_notify``): one datagram of
``KEY=VALUE`` lines to the socket ``$NOTIFY_SOCKET`` names, so that a
``Type=notify`` unit knows when the daemon is ready, reloading or stopping.
Nothing is sent (and nothing fails) when ``NOTIFY_SOCKET`` is not set.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from twisted.logger import Logger

__all__ = ["sd_notify"]

_log = Logger(namespace="turberfield_twisted.daemon.notify")


def sd_notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """
    Send ``message`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET`` of
    ``environ`` (default: this process's). Return whether it was sent; a
    socket that can't be reached is logged, never raised.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # the abstract namespace
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        _log.warn("NOTIFY_SOCKET is neither a path nor an abstract socket: not notified")
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        _log.warn("could not notify systemd ({error})", error=exc.strerror or str(exc))
        return False
    return True
