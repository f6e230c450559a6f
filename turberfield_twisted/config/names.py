"""
What names may look like: a job's guid, a session, a config key, a
worker's event name. Each pattern is matched whole (``fullmatch``): a
trailing newline is not a name.
"""

from __future__ import annotations

import re

__all__ = ["EVENT_NAME", "GUID", "RESERVED_KEYS", "SERVICE_NAME", "SESSION"]

#: Keys the initiator writes into a job's section: never set by an override.
RESERVED_KEYS = frozenset({
    "token", "admin_token", "listen_port", "listen_addr", "parent_addr", "parent_port",
    "session", "module", "overridable",
})


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


#: A job's guid: given at launch, or a declared job's name.
GUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


#: A service's name: its instances' guids are ``NAME.N`` (N counting up from 1,
#: never used twice), so it holds no dot.
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")


#: A worker's own event name (``POST /jobs/{guid}/events``; a hook's ``worker:NAME``).
EVENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


#: A job's session: at most 256 characters, no control characters nor ``$``.
SESSION = re.compile(r"^[^\x00-\x1f\x7f$]{0,256}$")


MAX_VALUE = 4096
