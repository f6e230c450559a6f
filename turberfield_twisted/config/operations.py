"""
Operations keys of a module's (or a service's) section: liveness after
ready and recycling. ::

    [my.module]
    live_interval = 5       ; check every 5 s once ready (unset: no liveness checks)
    live_timeout = 1        ; each check's time to answer
    live_failures = 3       ; checks failed in a row that restart the job, as a crash
    live_path = /health     ; what is asked (GET, 200 and the job's guid if JSON)
    live_watchdog = false   ; true: the worker pings WATCHDOG=1 on its ready fd instead
    max_age = 3600          ; restart the job after it has run this long (not a failure)
    max_age_jitter = 0.1    ; ... later by up to this fraction of max_age, drawn per run
    max_requests = 10000    ; the runtime asks to be recycled after this many requests

A service's section may set them too (its own win over its module's);
they reach each instance's section, where the worker runtime reads
``max_requests``, ``live_watchdog`` and ``live_interval``. No reactor here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from turberfield_twisted.config.readers import (
    SECONDS,
    BadValue,
    Reader,
    Section,
    boolean,
    number,
    whole,
)

if TYPE_CHECKING:
    from turberfield_twisted.config.settings import Settings

__all__ = ["OPERATIONS_KEYS", "OPERATIONS_READERS", "Operations", "operations_for",
           "operations_over", "read_operations", "service_keys"]


def _path(text: str) -> str:
    text = text.strip()
    if not text.startswith("/") or any(c.isspace() or ord(c) < 32 for c in text):
        raise BadValue("must be a path starting with / and holding no space")
    return text


@attrs.frozen
class Operations:
    """
    Liveness and recycling of a module's jobs: checked every
    ``live_interval`` seconds once ready (None: never), each check given
    ``live_timeout``, restarted after ``live_failures`` failed in a row;
    by ``GET live_path``, or by the worker's ``WATCHDOG=1`` pings
    (``live_watchdog``). Recycled after ``max_age`` seconds (plus up to
    ``max_age_jitter`` of it) or ``max_requests`` requests (None: never).
    """

    live_interval: float | None = None
    live_timeout: float = 1.0
    live_failures: int = 3
    live_path: str = "/health"
    live_watchdog: bool = False
    max_age: float | None = None
    max_age_jitter: float = 0.1
    max_requests: int | None = None

    @property
    def live_bound(self) -> float:
        """How long a job that stops answering may go on before it is restarted."""
        return (self.live_interval or 0.0) * self.live_failures + self.live_timeout


#: How each key of :class:`Operations` is read.
OPERATIONS_READERS: Mapping[str, Reader] = {
    "live_interval": SECONDS,
    "live_timeout": SECONDS,
    "live_failures": whole(1, 1000),
    "live_path": _path,
    "live_watchdog": boolean,
    "max_age": SECONDS,
    "max_age_jitter": number("must be a number from 0 to 1", 0, 1),
    "max_requests": whole(1),
}


#: The keys of :class:`Operations`: the daemon's own in a module's or a service's section.
OPERATIONS_KEYS = frozenset(OPERATIONS_READERS)


def read_operations(section: Section, base: Operations | None = None) -> Operations:
    """
    The operations keys ``section`` sets, over ``base`` (default: none set);
    raise :class:`~turberfield_twisted.errors.ConfigError` naming the key
    of a bad value, or ``live_timeout`` if it is not below ``live_interval``
    (each check must be over before the next is due).
    """
    found = attrs.evolve(base or Operations(), **section.read(OPERATIONS_READERS))
    if found.live_interval is not None and found.live_timeout >= found.live_interval:
        key = "live_timeout" if section.has("live_timeout") else "live_interval"
        raise section.error(key, "makes live_timeout not below live_interval: a check must"
                                 " be over before the next is due")
    return found


def operations_over(base: Operations, keys: Mapping[str, str]) -> Operations:
    """
    ``base`` with those of ``keys`` (a job's section, as text) that are
    operations keys and read well; one that does not read is left as in
    ``base`` (a section checked at load has none such).
    """
    changes = {}
    for key, text in keys.items():
        reader = OPERATIONS_READERS.get(key)
        if reader is None:
            continue
        try:
            changes[key] = reader(text)
        except BadValue:
            continue
    return attrs.evolve(base, **changes) if changes else base


def service_keys(settings: Settings, service: str | None) -> Mapping[str, str]:
    """The operations keys declared service ``service``'s section sets (none if not one)."""
    declared = settings.services.get(service) if service is not None else None
    return declared.operations if declared is not None else {}


def operations_for(settings: Settings, module: str, service: str | None = None) -> Operations:
    """The operations of a job of ``module`` (an instance of ``service``: its keys win)."""
    found = settings.module(module)
    base = found.operations if found is not None else Operations()
    return operations_over(base, service_keys(settings, service))
