"""
What a worker uses, read from ``/proc``: the resident memory (RSS) and the
CPU time of a process group, summed over its live members.

A worker leads its own process group (its launcher starts it in a session
of its own), so the group is the worker and whatever it started that did
not leave it. One call reads ``/proc`` once, for many groups.
"""

from __future__ import annotations

import os
from collections.abc import Collection

import attrs

__all__ = ["GroupStats", "group_stats"]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


_TICKS = os.sysconf("SC_CLK_TCK")


# Indexes into the fields of /proc/PID/stat that follow the command's ")".
_STATE, _PGRP, _UTIME, _STIME, _RSS = 0, 2, 11, 12, 21


@attrs.frozen
class GroupStats:
    """A process group's live members, their summed RSS (bytes) and CPU seconds."""

    pids: tuple[int, ...]
    rss: int
    cpu_seconds: float


def _fields(pid: int | str, proc: str) -> list[str] | None:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:  # gone, or not ours to read
        return None
    fields = text.rsplit(b")", 1)[-1].split()
    if len(fields) <= _RSS or fields[_STATE] in (b"Z", b"X"):
        return None
    return [field.decode("ascii", "replace") for field in fields[: _RSS + 1]]


def _add(found: dict[int, list[tuple[int, list[str]]]], key: int, pid: int,
         fields: list[str]) -> None:
    found.setdefault(key, []).append((pid, fields))


def group_stats(pids: Collection[int], proc: str = "/proc") -> dict[int, GroupStats]:
    """
    For each of ``pids`` that is alive: the stats of the process group it
    leads, or of itself alone if it leads none (so a worker that is not a
    group leader is never charged for its parent's group). A pid that is
    gone (or a zombie) is left out.
    """
    found: dict[int, list[tuple[int, list[str]]]] = {}
    leaders = set()
    for pid in pids:
        fields = _fields(pid, proc)
        if fields is None:
            continue
        if int(fields[_PGRP]) == pid:
            leaders.add(pid)
        else:
            _add(found, pid, pid, fields)
    if leaders:
        for entry in os.scandir(proc):
            if not entry.name.isdigit():
                continue
            fields = _fields(entry.name, proc)
            if fields is not None and int(fields[_PGRP]) in leaders:
                _add(found, int(fields[_PGRP]), int(entry.name), fields)
    return {
        key: GroupStats(
            pids=tuple(sorted(pid for pid, _ in members)),
            rss=sum(int(fields[_RSS]) for _, fields in members) * _PAGE_SIZE,
            cpu_seconds=sum(int(fields[_UTIME]) + int(fields[_STIME])
                            for _, fields in members) / _TICKS,
        )
        for key, members in found.items()
    }
