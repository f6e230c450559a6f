"""
Launch benchmark: what it costs to start, reach and stop a demo worker
through an Initiator, against the cost of a bare interpreter.

Run from the repository root::

    .venv/bin/python -P benchmarks/launch.py [--repeat N]

Every measurement is taken in rounds, side by side in one run, so that a
noisy machine slows all of them alike: each round times the two bare
interpreters and one launch and stop; ``--fanout-repeat`` of the rounds,
spread evenly, also launch ``--fanout`` workers at once. One warm-up
round comes first and is not counted. No round starts that might end
after ``--budget`` seconds. The table gives n, the median and the p90
(nearest rank) of each row; the ratio column divides a row's median by
the median of ``import klein``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import react
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

import turberfield_twisted.worker  # noqa: F401  (installs the asyncio reactor)
from turberfield_twisted import Initiator
from turberfield_twisted.config import parse_config
from turberfield_twisted.testing.procs import children_of, wait_gone

MODULE = "turberfield_twisted.demo.hello"

CONFIG = f"""
[bench]
listen_addr = 127.0.0.1
listen_port = 0
child_port_min = 22500
child_port_max = 22599
ready_timeout = 15
stop_timeout = 5

[{MODULE}]
greeting = hello
"""

#: Seconds one worker may take to answer /health before the run gives up.
READY_TIMEOUT = 15.0
#: Seconds a bare interpreter may take before the run gives up.
SUBPROCESS_TIMEOUT = 30.0

#: Row keys, their labels and units, in table order.
ROWS = [
    ("import_klein", 'A: python -P -c "import klein"', "ms"),
    ("pass", "B: python -P -c pass", "ms"),
    ("ready", "launch -> ready, one at a time", "ms"),
    ("fanout_wall", "fan-out {n}: launch -> all ready (wall)", "ms"),
    ("fanout_each", "fan-out {n}: launch -> ready, per-worker mean", "ms"),
    ("stop", "stop one: TERM -> exit", "ms"),
    ("fanout_stop", "stop {n} at once: TERM -> all exited (wall)", "ms"),
    ("rss_worker", "RSS of a ready demo worker", "MiB"),
    ("rss_init_start", "RSS of the initiator, before any worker", "MiB"),
    ("rss_init_before", "RSS of the initiator, before fan-out", "MiB"),
    ("rss_init_during", "RSS of the initiator, {n} workers ready", "MiB"),
    ("rss_init_after", "RSS of the initiator, after the {n} stopped", "MiB"),
]


def rss_mib(pid: int | str = "self") -> float:
    """The resident set size of ``pid`` in MiB, from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` by nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def time_interpreter(code: str, env: dict[str, str]) -> float:
    """Seconds for ``sys.executable -P -c code`` to start and exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-P", "-c", code], env=env, check=True,
                   timeout=SUBPROCESS_TIMEOUT, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def baselines(init: Initiator, samples: dict[str, list[float]]) -> None:
    """Time the two bare interpreters, with the environment workers get."""
    env = init.launcher.env  # type: ignore[attr-defined]
    samples["import_klein"].append(time_interpreter("import klein", env))
    samples["pass"].append(time_interpreter("pass", env))


async def launch_one(init: Initiator, samples: dict[str, list[float]], pids: set[int]) -> None:
    """Launch one worker, wait until it is ready, read its RSS, stop it."""
    start = time.perf_counter()
    guid = await init.launch(MODULE, session="bench")
    job = await init.ready(guid, timeout=READY_TIMEOUT)
    samples["ready"].append(time.perf_counter() - start)
    pids.add(job.pid)
    samples["rss_worker"].append(rss_mib(job.pid))
    start = time.perf_counter()
    await init.stop(guid)
    samples["stop"].append(time.perf_counter() - start)


async def fan_out(
    init: Initiator, count: int, samples: dict[str, list[float]], pids: set[int]
) -> None:
    """Launch ``count`` workers at once, wait for all to be ready, stop them all."""
    samples["rss_init_before"].append(rss_mib())
    ready_at: dict[str, float] = {}
    launched_at: dict[str, float] = {}
    waits = []

    def stamp(job: Any) -> Any:
        ready_at[job.guid] = time.perf_counter()
        return job

    start = time.perf_counter()
    for _ in range(count):
        launched = time.perf_counter()
        guid = await init.launch(MODULE, session="bench")
        launched_at[guid] = launched
        waits.append(init.ready(guid, timeout=READY_TIMEOUT).addCallback(stamp))
    jobs = await gatherResults(waits, consumeErrors=True)
    samples["fanout_wall"].append(time.perf_counter() - start)
    samples["fanout_each"].append(
        statistics.fmean(ready_at[g] - launched_at[g] for g in launched_at))
    samples["rss_init_during"].append(rss_mib())
    pids.update(job.pid for job in jobs)
    start = time.perf_counter()
    await gatherResults([init.stop(job.guid) for job in jobs], consumeErrors=True)
    samples["fanout_stop"].append(time.perf_counter() - start)
    samples["rss_init_after"].append(rss_mib())


def format_table(samples: dict[str, list[float]], fanout: int) -> str:
    """The results as a plain-text table, one row per measurement."""
    reference = statistics.median(samples["import_klein"])
    header = ("measurement", "n", "median", "p90", "unit", "÷ import klein")
    lines = []
    for key, label, unit in ROWS:
        values = samples[key]
        if not values:
            continue
        scale = 1000.0 if unit == "ms" else 1.0
        median = statistics.median(values)
        ratio = f"{median / reference:.2f}" if unit == "ms" else "-"
        lines.append((label.format(n=fanout), str(len(values)), f"{median * scale:.1f}",
                      f"{percentile(values, 90) * scale:.1f}", unit, ratio))
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def render(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *map(render, lines)])


async def run(reactor: Any, options: argparse.Namespace) -> None:
    """Warm up, measure in rounds until done or out of time, print the table."""
    init = Initiator(None, guid="bench", cfg=parse_config(CONFIG), reactor=reactor)
    init.startService()
    samples: dict[str, list[float]] = {key: [] for key, _, _ in ROWS}
    pids: set[int] = set()
    samples["rss_init_start"].append(rss_mib())
    begun = time.perf_counter()
    try:
        warm: dict[str, list[float]] = {key: [] for key, _, _ in ROWS}
        baselines(init, warm)
        await launch_one(init, warm, pids)
        fan_rounds = spread(options.fanout_repeat, options.repeat)
        longest = 0.0
        for done in range(options.repeat):
            if time.perf_counter() - begun + longest > options.budget:
                print(f"time budget of {options.budget:g}s reached after {done} rounds",
                      file=sys.stderr)
                break
            started = time.perf_counter()
            baselines(init, samples)
            await launch_one(init, samples, pids)
            if done in fan_rounds:
                await fan_out(init, options.fanout, samples, pids)
            longest = max(longest, time.perf_counter() - started)
    finally:
        await init.stopService()
        await wait_gone(reactor, pids)
    elapsed = time.perf_counter() - begun
    left = children_of(os.getpid())
    print(f"turberfield-twisted launch benchmark: {time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{elapsed:.1f}s, {len(pids)} workers started, {len(left)} left running")
    print()
    print(format_table(samples, options.fanout))


def spread(count: int, rounds: int) -> set[int]:
    """``count`` round numbers spread evenly over ``range(rounds)``."""
    count = min(count, rounds)
    return {i * rounds // count for i in range(count)} if count else set()


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an int in ``[low, high]``."""
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}..{high}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: ``--repeat``, ``--fanout``, ``--fanout-repeat``, ``--budget``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--repeat", type=bounded(1, 100), default=10,
                        help="rounds to measure (default 10)")
    parser.add_argument("--fanout", type=bounded(1, 50), default=10,
                        help="workers launched at once (default 10)")
    parser.add_argument("--fanout-repeat", type=bounded(0, 100), default=3,
                        help="how many of the rounds include a fan-out, spread evenly"
                             " (default 3)")
    parser.add_argument("--budget", type=float, default=50.0,
                        help="no round starts that might end after this many seconds"
                             " (default 50)")
    return parser.parse_args(argv)


def main() -> None:
    """Parse the command line, show only warnings from the log, run."""
    options = parse_args()
    observer: Any = FilteringLogObserver(
        textFileLogObserver(sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)],
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    react(lambda reactor: Deferred.fromCoroutine(run(reactor, options)))


if __name__ == "__main__":
    main()
