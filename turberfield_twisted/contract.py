"""
What the daemon and its workers agree on: exit codes, the file
descriptors a worker inherits, the paths each side serves, and how a
bearer token is carried and compared.

Both sides import this module; it imports nothing of Twisted, so the
worker runtime never loads the daemon's code through it.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Protocol  # loaded already: the package's __init__ imports typing
from urllib.parse import quote

__all__ = [
    "API_FILE",
    "CONFIG_PATH",
    "ENDED",
    "EXIT_APP",
    "EXIT_CONFIG",
    "EXIT_NO_CONFIG",
    "EXIT_OK",
    "EXIT_PORT_IN_USE",
    "EXIT_USAGE",
    "HEALTH_PATH",
    "LIFELINE_FD",
    "LISTEN_FDNAMES_ENV",
    "LISTEN_FDS_ENV",
    "LISTEN_FDS_START",
    "LISTEN_PID_ENV",
    "MAX_REQUESTS_EVENT",
    "READY_FD",
    "READY_LINE",
    "TOKEN_FILE",
    "WATCHDOG_LINE",
    "JobState",
    "authorized",
    "bearer",
    "bearer_header",
    "config_path",
    "default_state_dir",
    "events_path",
    "inherited_sockets",
    "is_loopback",
    "lifeline_fd",
    "listening_path",
    "reachable",
    "ready_fd",
    "socket_env",
    "token_matches",
]

TOKEN_FILE = "admin.token"  # noqa: S105  (a file name, not a secret)


API_FILE = "api.url"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/turberfield-proactor`` (``~/.local/state/...`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "turberfield-proactor"




#: The worker stopped as asked (SIGTERM), or its lifeline was lost.
EXIT_OK = 0


#: Bad command line (EX_USAGE).
EXIT_USAGE = 64


#: Malformed config, or none for this job's guid (EX_DATAERR).
EXIT_CONFIG = 65


#: No config arrived on stdin (EX_NOINPUT).
EXIT_NO_CONFIG = 66


#: The worker's app could not be built (EX_SOFTWARE).
EXIT_APP = 70


#: The worker could not bind its port (EX_TEMPFAIL): the daemon tries the next one.
EXIT_PORT_IN_USE = 75


#: The worker's fd that the daemon holds open and never writes: EOF means
#: the daemon is gone.
LIFELINE_FD = 3


#: The worker's fd (a pipe the daemon reads) where the runtime writes
#: :data:`READY_LINE` once it listens, then closes it (or keeps it open for
#: watchdog pings, :data:`WATCHDOG_LINE`): the daemon then
#: confirms with one health check instead of polling (as s6's
#: notification-fd). A worker that never writes it is polled.
READY_FD = 4


#: The first of the listening sockets a service's instance inherits, as
#: systemd's socket activation hands them (``SD_LISTEN_FDS_START``): fds 3
#: to 3 + LISTEN_FDS - 1. The lifeline and the ready fd follow them.
LISTEN_FDS_START = 3


#: systemd's socket activation variables: how many listening sockets a
#: process inherits, the pid they are for, and their names (``:``-separated).
LISTEN_FDS_ENV, LISTEN_PID_ENV, LISTEN_FDNAMES_ENV = "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"


def lifeline_fd(listen_fds: int = 0) -> int:
    """The lifeline of a worker that inherits ``listen_fds`` listening sockets: 3 + that."""
    return LIFELINE_FD + listen_fds


def ready_fd(listen_fds: int = 0) -> int:
    """The ready fd of a worker that inherits ``listen_fds`` listening sockets: 4 + that."""
    return READY_FD + listen_fds


def socket_env(names: list[str]) -> dict[str, str]:
    """
    The environment that hands a worker listening sockets named ``names``
    (at fds 3, 4 ...): ``LISTEN_FDS`` and ``LISTEN_FDNAMES``. ``LISTEN_PID``
    is the worker's own pid, set where it is known (as the worker starts).
    """
    return {LISTEN_FDS_ENV: str(len(names)), LISTEN_FDNAMES_ENV: ":".join(names)}


def inherited_sockets(environ: Mapping[str, str], pid: int) -> int:
    """
    How many listening sockets process ``pid`` inherited, as systemd says
    it (``LISTEN_FDS``, if ``LISTEN_PID`` is ``pid``); 0 if none, or if they
    were meant for another process (a parent's, passed on by mistake).
    """
    count, owner = environ.get(LISTEN_FDS_ENV, ""), environ.get(LISTEN_PID_ENV, "")
    if not (count.isascii() and count.isdigit() and owner.isascii() and owner.isdigit()):
        return 0
    return int(count) if int(owner) == pid else 0


#: What the runtime writes on :data:`READY_FD` once it listens.
READY_LINE = b"READY=1\n"


#: A watchdog ping, as ``sd_notify`` sends it. With ``live_watchdog = true``
#: in its section, a worker keeps its ready fd open after :data:`READY_LINE`
#: and writes this on it at least every ``live_interval / 2`` seconds, from
#: its reactor (the runtime does it for Klein workers), so a stuck reactor
#: stops pinging; ``live_failures`` intervals in a row without one restart it.
WATCHDOG_LINE = b"WATCHDOG=1\n"


#: The event a worker posts (``POST /jobs/{guid}/events``) once it has served its
#: section's ``max_requests`` requests: the daemon recycles it (a new instance first,
#: for a service's). Its data: ``{"requests": N, "max_requests": M}``.
MAX_REQUESTS_EVENT = "max_requests"


#: Served by every worker: ``{"status": "ok", "guid": G}``.
HEALTH_PATH = "/health"


#: Where a worker takes a new config from the daemon (job token needed).
CONFIG_PATH = "/_proactor/config"


def events_path(guid: str) -> str:
    """The daemon's path where job ``guid`` posts its events."""
    return f"/jobs/{quote(guid, safe='')}/events"


def listening_path(guid: str) -> str:
    """
    The daemon's path where job ``guid``, run where the daemon can't hand
    it a ready fd (on a cluster node), says where it listens.
    """
    return f"/jobs/{quote(guid, safe='')}/listening"


def config_path(guid: str) -> str:
    """The daemon's path where job ``guid`` fetches its config."""
    return f"/config/{quote(guid, safe='')}"


def bearer(header: bytes | str | None) -> bytes:
    """The token of an ``Authorization: Bearer <token>`` value (empty if none)."""
    if header is None:
        return b""
    if isinstance(header, str):
        header = header.encode("utf-8", "replace")
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return b""
    return token.strip()


def bearer_header(token: str) -> dict[bytes, list[bytes]]:
    """Request headers carrying ``token`` as a bearer token."""
    return {b"Authorization": [b"Bearer " + token.encode("utf-8")]}


def token_matches(given: bytes, expected: bytes | str) -> bool:
    """
    Whether ``given`` is ``expected``, compared in constant time. An empty
    ``expected`` (no token set) matches nothing.
    """
    if isinstance(expected, str):
        expected = expected.encode("utf-8")
    if not expected:
        hmac.compare_digest(given, b"\0" * 43)  # the same work either way
        return False
    return hmac.compare_digest(given, expected)


class HasHeaders(Protocol):
    """What :func:`authorized` reads of a request: a header (a Twisted web request's way)."""

    def getHeader(self, key: bytes) -> bytes | None: ...


def authorized(request: HasHeaders, expected: bytes | str) -> bool:
    """Whether ``request`` (a Twisted web request) carries ``expected`` as its bearer token."""
    return token_matches(bearer(request.getHeader(b"authorization")), expected)


def reachable(addr: str) -> str:
    """An address to connect to a server bound to ``addr``: loopback for an unspecified one."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr  # a host name
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return addr


def is_loopback(addr: str) -> bool:
    """
    Whether a server bound to ``addr`` is reached only from this host: a
    loopback address or ``localhost``. An unspecified address (every
    interface) or any other name is not.
    """
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


class JobState(StrEnum):
    """
    Where a job is in its life; the value is the name the API, web-hooks
    and the CLI show. The transitions between them are declared in
    :mod:`turberfield_twisted.jobs.transitions`.
    """

    #: Asked to start; waits for one of ``max_starting`` starting slots.
    WAITING = "waiting"
    #: Spawned, config written; not yet answering its health check.
    STARTING = "starting"
    #: Answered its health check.
    READY = "ready"
    #: Asked to stop: SIGTERM sent, SIGKILL after ``stop_timeout``.
    STOPPING = "stopping"
    #: Ended, as asked or cleanly; stays so until started again.
    EXITED = "exited"
    #: Ended unasked; starts again after a delay.
    BACKOFF = "backoff"
    #: Ended unasked and given up (or could not be started); stays down.
    FAILED = "failed"


#: States a job stays in until it is asked to start again.
ENDED = frozenset({JobState.EXITED, JobState.FAILED})
