"""
The disk side of logs on disk: one directory per job under the log dir,
``output.log`` in it, rotated by size through Twisted's own
:class:`twisted.python.logfile.LogFile` (``output.log.1`` the newest
backup), each line stamped. Everything here blocks on the disk: it runs
on :class:`~.joblogs.JobLogs`' one writer thread, never on the reactor.

A line on disk is ``2026-12-06T16:03:28.123456+00:00 stdout text`` or, in
JSON lines, ``{"time": 1796573008.123456, "stream": "stdout", "line": "text"}``;
:func:`parse_line` reads either.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from twisted.python.logfile import LogFile

from turberfield_twisted.jobs.job import OutputLine

__all__ = ["LOG_NAME", "SizedLogFile", "forget_files", "format_line", "job_dir", "parse_line",
           "read_lines"]

#: A job's current output file, in its own directory under the log dir.
LOG_NAME = "output.log"

#: Mode of a new log file: a worker's output may hold what only its operator should read.
_MODE = 0o600

_STREAMS = ("stdout", "stderr")


def job_dir(root: Path, guid: str) -> Path:
    """Where job ``guid``'s files are (``guid`` is checked: no ``/``, no leading dot)."""
    return root / guid


def format_line(line: OutputLine, as_json: bool, max_bytes: int) -> bytes:
    """``line`` as it is written (newline-ended), cut to fit ``max_bytes``."""
    if as_json:
        record = {"time": line.time, "stream": line.stream, "line": line.line}
        data = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        if len(data) <= max_bytes:
            return data
        text = line.line
        while len(data) > max_bytes and text:  # escapes grow a line: cut by what is over
            text = text[: max(0, len(text) - (len(data) - max_bytes) - 1)]
            record["line"] = text
            data = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        return data
    stamp = datetime.fromtimestamp(line.time, UTC).isoformat(timespec="microseconds")
    data = f"{stamp} {line.stream} {line.line}".encode()
    return data[: max_bytes - 1] + b"\n"


def parse_line(raw: bytes) -> dict[str, object] | None:
    """A line of a log file as ``{"time", "stream", "line"}``; None if it is not one (cut)."""
    text = raw.decode("utf-8", "replace").rstrip("\n")
    try:
        if text.startswith("{"):
            found = json.loads(text)
            if (isinstance(found, dict) and isinstance(found.get("time"), int | float)
                    and found.get("stream") in _STREAMS):
                return {"time": float(found["time"]), "stream": found["stream"],
                        "line": str(found.get("line"))}
            return None
        stamp, stream, line = [*text.split(" ", 2), "", ""][:3]
        if stream not in _STREAMS:
            return None
        return {"time": datetime.fromisoformat(stamp).timestamp(), "stream": stream,
                "line": line}
    except ValueError:
        return None


class SizedLogFile(LogFile):
    """
    A :class:`LogFile` that rotates before a write would take it past
    ``rotateLength`` (LogFile's own check is made after the file is past
    it): no file is ever over ``rotateLength`` bytes, given writes no longer.
    """

    def __init__(self, directory: Path, max_bytes: int, backups: int):
        self.incoming = 0
        super().__init__(LOG_NAME, str(directory), rotateLength=max_bytes, defaultMode=_MODE,
                         maxRotatedFiles=backups)

    def shouldRotate(self) -> bool:
        return bool(self.size and self.size + self.incoming > self.rotateLength)

    def write(self, data: bytes) -> None:
        """Write ``data`` (at most ``rotateLength`` bytes), rotating first if it would not fit."""
        self.incoming = len(data)
        super().write(data)


def chunks(lines: Iterable[bytes], most: int) -> Iterator[tuple[bytes, int]]:
    """``lines`` joined into chunks of at most ``most`` bytes, each with its count of lines."""
    held: list[bytes] = []
    size = 0
    for data in lines:
        if held and size + len(data) > most:
            yield b"".join(held), len(held)
            held, size = [], 0
        held.append(data)
        size += len(data)
    if held:
        yield b"".join(held), len(held)


def _files(directory: Path, backups: int) -> list[Path]:
    """A job's files, oldest first: the backups from ``output.log.N``, then ``output.log``."""
    found = [directory / f"{LOG_NAME}.{n}" for n in range(backups, 0, -1)]
    return [path for path in [*found, directory / LOG_NAME] if path.exists()]


def read_lines(directory: Path, backups: int, count: int,
               since: float | None = None) -> list[dict[str, object]]:
    """
    The last ``count`` lines of a job's files (at ``since`` or later, if
    given), oldest first: the newest file first, and no older one once
    ``count`` are found; a file last written before ``since`` is not read.
    """
    found: list[list[dict[str, object]]] = []
    total = 0
    for path in reversed(_files(directory, backups)):
        if total >= count:
            break
        kept: deque[dict[str, object]] = deque(maxlen=count - total)
        try:
            if since is not None and path.stat().st_mtime < since:
                break  # it and every older one were written before since
            with path.open("rb") as lines:
                for raw in lines:
                    record = parse_line(raw)
                    if record is not None and (since is None
                                               or float(record["time"]) >= since):  # type: ignore[arg-type]
                        kept.append(record)
        except FileNotFoundError:  # rotated away as it was read: by an outside tool
            continue
        found.append(list(kept))
        total += len(kept)
    return [record for lines in reversed(found) for record in lines]


def forget_files(directory: Path) -> None:
    """Remove a job's directory and every file in it (none there is fine)."""
    shutil.rmtree(directory, ignore_errors=True)
    if directory.exists():  # what rmtree could not remove stays: say so to the caller
        raise OSError(f"could not remove {directory}")


def make_root(path: Path) -> Path:
    """The log dir, made if it is not there (0700): raise ``OSError`` if it can't be."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"the log dir {path} is not writable")
    return path
