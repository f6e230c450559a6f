"""
bench.py's table: its rows (what each compares, its target), the medians
and ratios of a run's samples, and the plain-text table it prints.
"""

from __future__ import annotations

import statistics
from typing import Any

from service_rows import SERVICE_ROWS

__all__ = ["ROWS", "summarize", "table"]

Samples = dict[str, list[float]]


def _median(samples: Samples, key: str) -> float | None:
    values = samples.get(key)
    return statistics.median(values) if values else None


#: (label, ours key, baseline key or None, how ours compares: "ratio", "diff" or "value",
#:  unit, target (a bound), "max" or "min": the bound is an upper or a lower one)
ROWS: list[tuple[str, str, str | None, str, str, float | None, str]] = [
    ("launch -> answering, one job (p50)", "launch proactor", "launch bare", "ratio", "ms",
     1.05, "max"),
    ("warm launch -> answering, one job (p50)", "launch proactor warm", "launch bare",
     "ratio", "ms", 0.10, "max"),
    ("import of the runtime - import klein (paired)", "import diff", None, "value", "ms",
     10.0, "max"),
    ("N declared, daemon start -> all answering, vs circus", "start proactor", "start circus",
     "ratio", "ms", None, "max"),
    ("N declared, start -> all answering: supervisord vs circus", "start supervisord",
     "start circus", "ratio", "ms", None, "max"),
    ("daemon CPU, start with N cold declared, vs circusd", "start cpu proactor",
     "start cpu circus", "ratio", "s", 1.5, "max"),
    ("daemon CPU, start with N declared: supervisord vs circusd", "start cpu supervisord",
     "start cpu circus", "ratio", "s", None, "max"),
    ("daemon RSS, N declared all answering, vs circus", "start rss proactor", "start rss circus",
     "ratio", "KiB", 1.3, "max"),
    ("daemon CPU, start with N declared: twistd proactor vs circusd", "start cpu twistd",
     "start cpu circus", "ratio", "s", None, "max"),
    ("daemon RSS, N declared all answering: twistd proactor vs circus", "start rss twistd",
     "start rss circus", "ratio", "KiB", None, "max"),
    ("N at once, all answering: cold vs circus", "fan-out proactor", "fan-out circus",
     "ratio", "ms", 0.90, "max"),
    ("N at once, all answering: warm vs circus", "fan-out proactor warm", "fan-out circus",
     "ratio", "ms", 0.15, "max"),
    ("N at once: supervisord vs circus", "fan-out supervisord", "fan-out circus", "ratio",
     "ms", None, "max"),
    ("N at once: procmon (from its start) vs circus", "fan-out procmon", "fan-out circus",
     "ratio", "ms", None, "max"),
    ("N launch-and-wait clients at once, cold, vs circus N at once", "clients proactor",
     "fan-out circus", "ratio", "ms", None, "max"),
    ("daemon CPU, N launch-and-wait clients (cold) vs circusd N at once",
     "cpu clients proactor", "cpu fan-out circus", "ratio", "s", None, "max"),
    ("daemon CPU, N warm launch-and-wait clients vs N warm launches",
     "cpu clients proactor warm", "cpu fan-out proactor warm", "ratio", "s", None, "max"),
    ("kill -9 -> answering again vs procmon", "restart proactor", "restart procmon", "ratio",
     "ms", 1.05, "max"),
    ("kill -9 -> answering again, warm, vs procmon", "restart proactor warm",
     "restart procmon", "ratio", "ms", None, "max"),
    ("kill -9 -> answering again: circus vs procmon", "restart circus", "restart procmon",
     "ratio", "ms", None, "max"),
    ("kill -9 -> answering again: supervisord vs procmon", "restart supervisord",
     "restart procmon", "ratio", "ms", None, "max"),
    ("relay GET req/s, 1 connection, vs direct", "relay 1", "direct 1", "ratio", "req/s",
     None, "min"),
    ("relay GET req/s, 10 connections, vs direct", "relay 10", "direct 10", "ratio", "req/s",
     0.60, "min"),
    ("daemon RSS with N jobs vs circus", "rss fan-out proactor", "rss fan-out circus",
     "ratio", "KiB", 1.3, "max"),
    ("daemon RSS with N jobs: supervisord vs circus", "rss fan-out supervisord",
     "rss fan-out circus", "ratio", "KiB", None, "max"),
    ("daemon RSS growth per job (KiB)", "growth proactor", None, "value", "KiB", 50.0, "max"),
    ("warm template RSS (MiB)", "rss template", None, "value", "MiB", None, "max"),
    ("warm template USS (MiB)", "uss template", None, "value", "MiB", None, "max"),
    ("warm worker USS (MiB)", "uss launch proactor warm", None, "value", "MiB", 10.0, "max"),
    ("cold worker USS vs bare worker", "uss launch proactor", "uss launch bare", "ratio",
     "KiB", None, "max"),
    ("daemon CPU per launch with N jobs vs with none", "launch cost at N", "launch cost at 0",
     "ratio", "us", 1.2, "max"),
    ("spawn() blocks the reactor, p90 under fan-out (ms)", "spawn p90", None, "value", "ms",
     10.0, "max"),
    *SERVICE_ROWS,
]


#: Samples are seconds; a unit of time shows them so.
_SCALE = {"ms": 1e3, "us": 1e6}


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per row: medians, the comparison, its target and whether it is met."""
    samples: Samples = result["samples"]
    if samples.get("rss fan-out proactor") and samples.get("rss0 fan-out proactor"):
        count = result["options"]["fanout"]
        samples["growth proactor"] = [
            (after - before) / count for before, after in
            zip(samples["rss0 fan-out proactor"], samples["rss fan-out proactor"], strict=False)]
    rows = []
    for label, key, base, how, unit, target, bound in ROWS:
        ours, other = _median(samples, key), _median(samples, base) if base else None
        if ours is None or (base and other is None):
            rows.append({"measure": label, "missing": True})
            continue
        scale = _SCALE.get(unit, 1.0)
        if unit == "MiB":
            ours = ours / 1024
        if how == "ratio":
            value = ours / other if other else float("nan")
        elif how == "diff":
            value = (ours - other) * scale
        else:
            value = ours * scale
        met = None if target is None else (value <= target if bound == "max" else value >= target)
        rows.append({"measure": label, "ours": ours, "baseline": other, "unit": unit,
                     "n": len(samples[key]), "value": value, "how": how,
                     "target": target, "bound": bound, "met": met})
    return rows


def _show(x: float | None, unit: str) -> str:
    if x is None:
        return "-"
    if unit == "MiB":
        return f"{x:,.2f} MiB"
    if unit == "s":
        return f"{x:,.2f} s"
    return f"{x * _SCALE.get(unit, 1.0):,.1f} {unit}"


def table(result: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The rows as one plain-text table."""
    header = ("measure", "n", "this daemon", "baseline", "ratio/value", "target", "met")
    lines = []
    for row in rows:
        if row.get("missing"):
            lines.append((row["measure"], "0", "-", "-", "-", "-", "-"))
            continue
        unit = row["unit"]
        ours, base = _show(row["ours"], unit), _show(row["baseline"], unit)
        target = "-" if row["target"] is None else (
            ("<= " if row["bound"] == "max" else ">= ") + f"{row['target']:g}")
        met = {None: "", True: "yes", False: "NO"}[row["met"]]
        lines.append((row["measure"], str(row["n"]), ours, base, f"{row['value']:.2f}",
                      target, met))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def render(r: tuple[str, ...]) -> str:
        return "  ".join([r[0].ljust(widths[0]),
                          *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))])

    title = (f"turberfield-twisted benchmark: {result['date']}, {result['machine']}, "
             f"{result['seconds']:.0f}s, N = {result['options']['fanout']}")
    return "\n".join([title, "", render(header), "  ".join("-" * w for w in widths),
                      *map(render, lines)])
