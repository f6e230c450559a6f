"""
A job's section: the overrides a launch may give, checked against its
module's section, and the section its worker reads on stdin, composed
when it is sent from its module's keys, the overrides and what the
initiator sets (its port, session, the daemon's address, its token).
Nothing here writes to the config it is given: that is the operator's.

No error raised here ever quotes a value: it may be a secret.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping

from turberfield_twisted.config.names import KEY, MAX_VALUE, RESERVED_KEYS
from turberfield_twisted.errors import BadOverride, OverrideNotAllowed

__all__ = ["check_overrides", "job_section"]


def job_section(
    module_keys: Mapping[str, str], module: str, overrides: Mapping[str, str], *,
    port: int, session: str | None, parent: tuple[str, int], token: str,
) -> dict[str, str]:
    """
    A job's own section, values as they are meant (resolved, unescaped):
    ``module_keys`` (its module section's own keys), ``overrides`` over
    them, then ``module``, ``listen_port``, ``session``, ``parent_addr``,
    ``parent_port`` and ``token``.
    """
    addr, parent_port = parent
    return {**module_keys, **overrides, "module": module, "listen_port": str(port),
            "session": session or "", "parent_addr": addr, "parent_port": str(parent_port),
            "token": token}


def check_overrides(
    cfg: configparser.ConfigParser, module: str, overrides: object
) -> dict[str, str]:
    """
    Validate per-job overrides for ``module``: a mapping of key to a string,
    number or boolean, each key listed in the section's ``overridable``
    (comma or space separated) and none of :data:`RESERVED_KEYS`.

    Return them as strings. Raise :class:`BadOverride` for a malformed
    mapping, :class:`OverrideNotAllowed` for a key that may not be set.
    """
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise BadOverride("config must be an object of key: value")
    allowed = set(cfg.get(module, "overridable", fallback="").replace(",", " ").split())
    out: dict[str, str] = {}
    for key, value in overrides.items():
        if not KEY.accepts(key):
            raise BadOverride("config keys must be short names of letters, digits, _ . -")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise BadOverride(f"config value of {key!r} must be a string, number or boolean")
        text = str(value)
        if len(text) > MAX_VALUE or "\n" in text or "\r" in text:
            raise BadOverride(f"config value of {key!r} must be one line of at most {MAX_VALUE}")
        if key in RESERVED_KEYS or key not in allowed:
            may = (f"it allows {', '.join(sorted(allowed))}" if allowed else "it allows none:"
                   " its section's overridable key lists those a launch may set")
            raise OverrideNotAllowed(f"{module} does not allow {key!r} to be set ({may})")
        out[key] = text
    return out
