"""
How ``proactor`` prints what the API answers: aligned tables, one job as
``key  value`` lines, output lines, live events, and errors in one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Any

__all__ = [
    "JOB_COLUMNS",
    "error_line",
    "format_event",
    "format_job",
    "format_jobs",
    "format_logs",
    "format_table",
    "printable",
]

#: What a terminal would act on rather than show: control characters (but
#: tab), C1 controls (CSI, OSC ...) and the bidirectional overrides.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """
    ``text`` with what a terminal would act on (an ESC sequence that
    retitles the window or clears the screen, a carriage return, a bell, a
    bidi override) escaped as ``\\xNN`` or ``\\uNNNN``, so that a worker's
    output is shown, never obeyed.
    """
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, list | tuple):
        return printable(",".join(str(v) for v in value)) or "-"
    return printable(str(value))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned on the widest cell; None shows as ``-``."""
    cells = [list(headers)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _duration(seconds: Any) -> str | None:
    """``3d4h``, ``2h5m``, ``4m10s`` or ``12s``."""
    if not isinstance(seconds, int | float):
        return None
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _size(count: Any) -> str | None:
    """Bytes as ``12.3M`` (binary units)."""
    if not isinstance(count, int | float):
        return None
    value = float(count)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return None  # pragma: no cover


#: The ``ls`` columns: header, and how each job's value is shown.
JOB_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("GUID", lambda job: job.get("guid", "")[:12]),
    ("MODULE", lambda job: job.get("module")),
    ("STATE", lambda job: job.get("state")),
    ("UPTIME", lambda job: _duration(job.get("uptime"))),
    ("RESTARTS", lambda job: job.get("restarts")),
    ("RSS", lambda job: _size(job.get("rss"))),
    ("CPU", lambda job: None if job.get("cpu") is None else f"{job['cpu']:.1f}s"),
    ("PID", lambda job: job.get("pid")),
    ("PORT", lambda job: job.get("port")),
)


def format_jobs(jobs: Sequence[dict[str, Any]]) -> str:
    """The ``ls`` table: a guid's first 12 characters (enough to name it), state, usage."""
    return format_table([name for name, _ in JOB_COLUMNS],
                        [[show(job) for _, show in JOB_COLUMNS] for job in jobs])


def _when(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).isoformat(sep=" ", timespec="milliseconds")
    return _cell(value)


#: How ``show`` prints the fields ``ls`` prints in units.
_SHOWN = {"started": _when, "uptime": _duration, "rss": _size,
          "cpu": lambda cpu: None if cpu is None else f"{cpu:.1f}s"}


def format_job(job: dict[str, Any]) -> str:
    """
    One job as aligned ``key  value`` lines (times, sizes and durations as
    ``ls`` shows them), its config keys as ``config.KEY``.
    """
    rows = [[key, _SHOWN[key](value) if key in _SHOWN else value]
            for key, value in job.items() if key != "config"]
    rows += [[f"config.{key}", value] for key, value in sorted((job.get("config") or {}).items())]
    return "\n".join(format_table(["", ""], rows).splitlines()[1:])


def _log_line(entry: dict[str, Any], raw: bool = False) -> str:
    """One output line as ``time stream line``; its control characters escaped unless ``raw``."""
    line = str(entry.get("line", ""))
    return (f"{_when(entry.get('time'))} {printable(str(entry.get('stream', '-')))}"
            f" {line if raw else printable(line)}")


def format_logs(lines: Sequence[dict[str, Any]], raw: bool = False) -> str:
    """Output lines as ``time stream line``; control characters escaped unless ``raw``."""
    return "\n".join(_log_line(entry, raw) for entry in lines)


def format_event(name: str, data: Any, raw: bool = False) -> str:
    """
    One live event as a line: ``time guid module state`` (and what else it
    says); control characters escaped unless ``raw``.
    """
    if name == "log" and isinstance(data, dict):
        return _log_line(data, raw)
    line = _event_line(name, data)
    return line if raw else printable(line)


def _event_line(name: str, data: Any) -> str:
    if not isinstance(data, dict):
        return f"{name} {data}"
    if data.get("kind") == "service":
        return (f"{_when(data.get('time'))} service:{data.get('service', '-')}"
                f" {data.get('module', '-')} {data.get('event')} {json.dumps(data.get('data'))}")
    head = (f"{_when(data.get('time'))} {str(data.get('guid', '-'))[:12]}"
            f" {data.get('module', '-')}")
    if data.get("kind") == "worker":
        return f"{head} worker:{data.get('event')} {json.dumps(data.get('data'))}"
    more = [f"{key}={data[key]}" for key in ("pid", "port", "restarts") if data.get(key)]
    if data.get("last_error"):
        more.append(f"last_error={data['last_error']}")
    return " ".join([head, str(data.get("event", name)), *more])


def error_line(status: int, content_type: str, body: bytes) -> str:
    """
    An error answer in one line: its JSON ``error`` if it has one, else the
    status and its reason (never a page of HTML), with a short plain text
    body where there is one.
    """
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return f"{parsed['error']} (HTTP {status})"
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "error"
    text = body.decode("utf-8", "replace").strip()
    if content_type.startswith("text/plain") and text and "\n" not in text[:200]:
        return f"HTTP {status} {reason}: {text[:200]}"
    return f"HTTP {status} {reason}" + (f" ({content_type or 'no content type'}, "
                                         f"{len(body)} bytes)" if body else "")
