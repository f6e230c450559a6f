"""
The keys of logs on disk (the initiator's section) and of the watch mode
(a module's section), read here so that the settings' own module only
registers them.

``log_dir``: where each job's output goes (default: ``logs/`` in the
state dir; ``off``: no files, only the live tail); ``log_max_bytes``:
the most a file holds before it is rotated (4K at least); ``log_backups``:
the rotated files kept beside it; ``log_format``: ``text`` (a stamp, the
stream, the line) or ``json`` (JSON lines).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from turberfield_twisted.config.readers import BadValue, Reader, boolean, choice, size, whole

__all__ = ["LOG_MIN_BYTES", "LOG_READERS", "WATCH_READERS", "LogSettings", "log_settings",
           "watched"]

#: The least ``log_max_bytes``: room for a stamp and a line's first few KB.
LOG_MIN_BYTES = 4096


def _log_bytes(text: str) -> int:
    value = size(text)
    if value < LOG_MIN_BYTES:
        raise BadValue(f"must be at least {LOG_MIN_BYTES} bytes")
    return value


def _log_dir(text: str) -> str:
    if "\x00" in text:
        raise BadValue("must be a path")
    return text.strip()


@attrs.frozen
class LogSettings:
    """How each job's output is written to disk (``dir`` empty: the state dir's ``logs/``)."""

    dir: str = ""
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5
    format: str = "text"

    @property
    def off(self) -> bool:
        """Whether logs on disk are off (``log_dir = off``)."""
        return self.dir.lower() == "off"


#: The initiator's keys of logs on disk, by the :class:`LogSettings` field each fills.
LOG_READERS: Mapping[str, Reader] = {
    "log_dir": _log_dir,
    "log_max_bytes": _log_bytes,
    "log_backups": whole(1, 1000),
    "log_format": choice("text", "json"),
}


def log_settings(read: Mapping[str, Any]) -> LogSettings:
    """The :class:`LogSettings` of ``read`` (what a section read of :data:`LOG_READERS`)."""
    return LogSettings(**{key.removeprefix("log_"): value for key, value in read.items()})


#: A module's key of the watch mode: restart its jobs when its source changes.
WATCH_READERS: Mapping[str, Reader] = {"watch": boolean}


def watched(modules: Mapping[str, Any]) -> list[str]:
    """The names of ``modules`` (ModuleSettings by name) whose section says ``watch = true``."""
    return sorted(name for name, module in modules.items() if module.watch)
