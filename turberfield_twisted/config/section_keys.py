"""
The keys of each section of the daemon's config that the daemon reads, and
the reader (:mod:`.readers`) that checks each one's value: the initiator's
own section, a module's (restart policy, where its workers listen, limits)
and a declared job's. :func:`~.settings.check_config` reads them.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping

from turberfield_twisted.config.logs import WATCH_READERS
from turberfield_twisted.config.operations import OPERATIONS_READERS
from turberfield_twisted.config.policy import LIMIT_KEYS
from turberfield_twisted.config.readers import (
    DELAY,
    PORT,
    SECONDS,
    BadValue,
    Reader,
    address,
    boolean,
    choice,
    networks,
    number,
    overridable,
    restart,
    size,
    srun_args,
    whole,
)

__all__ = [
    "INITIATOR_READERS",
    "INITIATOR_SECRETS",
    "JOB_KEYS",
    "LIMIT_READERS",
    "MODULE_KEYS",
    "MODULE_READERS",
    "POLICY_READERS",
    "SYNC_MODES",
]

#: ``store_sync`` values: SQLite's ``synchronous`` setting in WAL mode.
SYNC_MODES = ("normal", "full")


def _open_files(text: str) -> int:
    value: int = whole(1)(text)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if os.geteuid() != 0 and hard != resource.RLIM_INFINITY and value > hard:
        raise BadValue(f"must not be above the daemon's own hard limit ({hard})")
    return value


INITIATOR_READERS: Mapping[str, Reader] = {
    "listen_addr": address,
    "listen_port": whole(0, 65535),
    "listen_backlog": whole(1, 65535),
    "child_port_min": PORT,
    "child_port_max": PORT,
    "ready_timeout": SECONDS,
    "stop_timeout": SECONDS,
    "max_exited": whole(0),
    "max_body": whole(1),
    "relay_timeout": SECONDS,
    "read_timeout": SECONDS,
    "hook_allow": networks,
    "pythonpath": str,
    "max_starting": whole(1),
    "store_sync": choice(*SYNC_MODES),
    "limit_interval": SECONDS,
    "insecure_listen": boolean,
    "tls_client_ca": str,
    "tls_ca": str,
    "hook_ca": str,
    "audit_keep": whole(1, 10_000_000),
    "events_keep": whole(1, 10_000_000),
    "auth_failures": whole(1, 1_000_000),
    "max_instances": whole(1, 4096),
    "node_failures": whole(1, 1_000_000),
    "node_failure_window": SECONDS,
    "node_exclude_for": SECONDS,
}


#: Keys the initiator's section may hold that are not kept in its settings.
INITIATOR_SECRETS = frozenset({"admin_token"})


POLICY_READERS: Mapping[str, Reader] = {
    "restart": restart,
    "backoff_initial": DELAY,
    "backoff_factor": number("must be a number of 0 or more", 0),
    "backoff_cap": DELAY,
    "jitter": number("must be a number from 0 to 1", 0, 1),
    "max_restarts": whole(0),
    "restart_window": DELAY,
    "reset_after": DELAY,
}


MODULE_READERS: Mapping[str, Reader] = {
    "listen_addr": address,
    "overridable": overridable,
    "warm": boolean,
    "launcher": choice("local", "slurm"),
    "slurm_args": srun_args,
    **WATCH_READERS,
}


LIMIT_READERS: Mapping[str, Reader] = {
    "max_memory": size,
    "max_open_files": _open_files,
    "max_cpu_seconds": whole(1),
}


assert tuple(LIMIT_READERS) == LIMIT_KEYS


#: The keys of a module's section that the daemon reads: the rest are its worker's own.
MODULE_KEYS = frozenset({*POLICY_READERS, *MODULE_READERS, *LIMIT_READERS,
                         *OPERATIONS_READERS})


#: The keys of a ``[job:NAME]`` section that are not overrides.
JOB_KEYS = frozenset({"module", "session", "requires", *LIMIT_KEYS})
