"""
What a worker uses, read from ``/proc``: the resident memory (RSS) and the
CPU time of its process group, summed over its live members.

A worker leads its own process group (its launcher starts it in a session
of its own), so the group is the worker and whatever it started that did
not leave it. Only the group is read, never the rest of ``/proc``: the
leader's ``stat``, then, through each member's
``/proc/PID/task/TID/children``, its children's, keeping those still in
the group, and so on down. The cost is the job's own processes, however
many others the host runs. A member whose parent has exited (reparented
to init, still in the group) is not found this way and not counted.

:func:`job_stats` keeps a job's last reading on the job for
:data:`MAX_AGE` seconds: ``GET /jobs``, ``GET /jobs/{guid}`` and the
memory watch share it, so a job's group is read at most once a second
however many ask.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import TYPE_CHECKING

import attrs

from turberfield_twisted.launch.interfaces import ILocalProcess, IWorkerProcess

if TYPE_CHECKING:
    from turberfield_twisted.jobs.job import Job

__all__ = ["MAX_AGE", "GroupStats", "Reading", "group_stats", "job_stats", "local_pid",
           "read_group"]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


_TICKS = os.sysconf("SC_CLK_TCK")


# Indexes into the fields of /proc/PID/stat that follow the command's ")".
_STATE, _PGRP, _UTIME, _STIME, _RSS = 0, 2, 11, 12, 21


#: Seconds a job's reading is kept before its group is read again.
MAX_AGE = 1.0


@attrs.frozen
class GroupStats:
    """A process group's live members, their summed RSS (bytes) and CPU seconds."""

    pids: tuple[int, ...]
    rss: int
    cpu_seconds: float


@attrs.frozen
class Reading:
    """What :func:`job_stats` read of worker ``pid``'s group at ``at`` (None: it is gone)."""

    pid: int
    at: float
    stats: GroupStats | None


def local_pid(process: IWorkerProcess | None) -> int | None:
    """The pid of a worker ``process`` that runs on this host (an ILocalProcess), else None."""
    if process is None or not ILocalProcess.providedBy(process):
        return None
    pid: int | None = process.pid
    return pid


def _fields(pid: int, proc: str) -> list[str] | None:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:  # gone, or not ours to read
        return None
    fields = text.rsplit(b")", 1)[-1].split()
    if len(fields) <= _RSS or fields[_STATE] in (b"Z", b"X"):
        return None
    return [field.decode("ascii", "replace") for field in fields[: _RSS + 1]]


def _children(pid: int, proc: str) -> list[int]:
    """The children of each thread of ``pid`` (none if it is gone)."""
    try:
        threads = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in threads:
        try:
            with open(f"{proc}/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(child) for child in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def read_group(pid: int, proc: str = "/proc") -> GroupStats | None:
    """
    The stats of the process group ``pid`` leads (its members found from
    it downwards), or of ``pid`` alone if it leads none (so a worker that
    is not a group leader is never charged for its parent's group); None
    if it is gone (or a zombie).
    """
    fields = _fields(pid, proc)
    if fields is None:
        return None
    members = [(pid, fields)]
    if int(fields[_PGRP]) == pid:
        todo = _children(pid, proc)
        while todo:
            child = todo.pop()
            found = _fields(child, proc)
            if found is None or int(found[_PGRP]) != pid:
                continue  # gone, or it left the group: neither it nor what it started counts
            members.append((child, found))
            todo.extend(_children(child, proc))
    return GroupStats(
        pids=tuple(sorted(member for member, _ in members)),
        rss=sum(int(found[_RSS]) for _, found in members) * _PAGE_SIZE,
        cpu_seconds=sum(int(found[_UTIME]) + int(found[_STIME])
                        for _, found in members) / _TICKS,
    )


def group_stats(pids: Collection[int], proc: str = "/proc") -> dict[int, GroupStats]:
    """:func:`read_group` of each of ``pids``; a pid that is gone is left out."""
    found = {pid: read_group(pid, proc) for pid in pids}
    return {pid: stats for pid, stats in found.items() if stats is not None}


def job_stats(job: Job, now: float, max_age: float = MAX_AGE,
              proc: str = "/proc") -> GroupStats | None:
    """
    The stats of ``job``'s process group at ``now`` (seconds on the
    reactor's clock): its reading of less than ``max_age`` seconds ago if
    it has one of its current worker, else a new one, kept on the job.
    None if it has no worker on this host, or it is gone.
    """
    pid = local_pid(job.process)
    if pid is None:
        return None
    kept = job.usage
    if kept is not None and kept.pid == pid and 0 <= now - kept.at < max_age:
        return kept.stats
    stats = read_group(pid, proc)
    job.usage = Reading(pid, now, stats)
    return stats
