"""
What names may look like: a job's guid, a session, a config key, a
worker's event name, a module's dotted name, a Slurm job step, a
service's name.

Each is a :class:`Name`, whose only test is :meth:`Name.accepts`: the whole
string must match (``re.fullmatch``), so a trailing newline is not a name
(``re.match`` with ``$`` would take ``"abc\\n"``: ``$`` also matches before
a last newline). There is no ``match`` to call by mistake.
"""

from __future__ import annotations

import re
from typing import TypeGuard

import attrs

__all__ = ["EVENT_NAME", "GUID", "KEY", "MODULE", "RESERVED_KEYS", "SERVICE_NAME", "SESSION",
           "STEP", "Name"]

#: Keys the initiator writes into a job's section: never set by an override.
RESERVED_KEYS = frozenset({
    "token", "admin_token", "listen_port", "listen_addr", "parent_addr", "parent_port",
    "session", "module", "overridable", "parent_scheme", "parent_ca",
})


@attrs.frozen
class Name:
    """
    A kind of name: ``core``, a regular expression that a whole string must
    match. ``pattern`` is the same anchored as JSON Schema (ECMAScript)
    reads it, where ``$`` is the end of the string only.
    """

    core: str
    _whole: re.Pattern[str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_whole", re.compile(self.core))

    @property
    def pattern(self) -> str:
        """``^core$``: the pattern for an OpenAPI schema."""
        return f"^{self.core}$"

    def accepts(self, text: object) -> TypeGuard[str]:
        """Whether ``text`` is a string that is wholly such a name."""
        return isinstance(text, str) and self._whole.fullmatch(text) is not None


#: A key of a job's config (a launch's override).
KEY = Name(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


#: A job's guid: given at launch, or a declared job's name.
GUID = Name(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


#: A service's name: its instances' guids are ``NAME.N`` (N counting up from 1,
#: never used twice), so it holds no dot.
SERVICE_NAME = Name(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")


#: A worker's own event name (``POST /jobs/{guid}/events``; a hook's ``worker:NAME``).
EVENT_NAME = Name(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


#: A job's session: at most 256 characters, no control characters nor ``$``.
SESSION = Name(r"[^\x00-\x1f\x7f$]{0,256}")


#: A module's dotted name (no path, no option): what a worker runs with ``-m``.
MODULE = Name(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


#: A Slurm job step, ``JOBID.STEP`` (or a whole job, ``JOBID``).
STEP = Name(r"[0-9]{1,20}(?:\.[0-9]{1,10})?")


MAX_VALUE = 4096
