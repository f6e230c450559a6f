"""
Durability benchmark: what the durable store, the limits and the state
dir's lock cost.

Run from the repository root::

    .venv/bin/python -P benchmarks/durable.py [--repeat N]

Rows (each the median and p90 of N samples, in microseconds unless said):

- ``put_job``: one job kept (a launch, a stop, a restart, a config change),
  in WAL mode with ``synchronous`` NORMAL (the default) and FULL;
- ``queue + done``: one web-hook record kept, then forgotten once
  delivered: the store's cost per event per hook;
- ``read 1000 jobs + 1000 records``: what a restart reads back (ms);
- ``group_stats``: reading 1 and 50 process groups, each from its leader
  down (the memory watch, each ``limit_interval``, and the API's views),
  with the number of processes on the machine (which should not matter);
- ``prlimit(2)``: setting two rlimits on a child, against spawning
  ``setsid true`` with and without util-linux ``prlimit`` in front (ms);
- ``second daemon exits``: ``twistd proactor`` on a locked state dir,
  from spawn to exit (ms).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from turberfield_twisted.daemon.statedir import StateDir
from turberfield_twisted.daemon.store import Store
from turberfield_twisted.daemon.store_records import HookRecord, JobRecord, QueuedRecord
from turberfield_twisted.jobs.procstat import group_stats


def timed(action: Callable[[int], object], n: int) -> list[float]:
    """Seconds each of ``n`` calls of ``action(i)`` took."""
    samples = []
    for i in range(n):
        start = time.perf_counter()
        action(i)
        samples.append(time.perf_counter() - start)
    return samples


def row(name: str, samples: list[float], unit: float = 1e6, label: str = "us") -> None:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    print(f"{name:<44} {len(samples):>6} {statistics.median(samples) * unit:>10.1f}"
          f" {p90 * unit:>10.1f} {label}")


def store_rows(base: Path, n: int) -> None:
    for sync in ("normal", "full"):
        one_store(base, sync, n)


def one_store(base: Path, sync: str, n: int) -> None:
    state = StateDir.open(base / sync)
    state.lock()
    store = Store.open(state, sync)
    mode = sync.upper()
    overrides = {"greeting": "bonjour", "colour": "blue"}
    row(f"put_job (synchronous {mode})", timed(
        lambda i: store.put_job(JobRecord(f"job-{i}", "demo", "s", overrides, port=i)), n))
    row(f"put_job, wanted stopped ({mode})", timed(
        lambda i: store.put_job(JobRecord(f"job-{i}", "demo", "s", overrides, "stopped")), n))
    store.add_hook(HookRecord("h", "http://127.0.0.1:1/", ("*",), "secret"))
    body = b'{"kind":"state","event":"ready","guid":"0123456789abcdef","seq":1}' * 3

    def one_event(i: int) -> None:
        store.queue("h", QueuedRecord(i + 1, "ready", body))
        store.done("h", i + 1)

    row(f"queue + done, per event per hook ({mode})", timed(one_event, n))
    for i in range(1000):
        store.queue("h", QueuedRecord(n + i + 1, "ready", body))
    row(f"read {n} jobs + 1000 records ({mode})",
        timed(lambda i: (store.jobs(), store.hooks()), 20), 1e3, "ms")
    store.close()
    state.close()


def proc_rows(n: int) -> None:
    sleepers = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(50)]
    try:
        processes = sum(1 for entry in os.listdir("/proc") if entry.isdigit())
        pids = [proc.pid for proc in sleepers]
        row(f"group_stats, 1 group ({processes} processes)",
            timed(lambda i: group_stats(pids[:1]), n // 10))
        row(f"group_stats, 50 groups ({processes} processes)",
            timed(lambda i: group_stats(pids), n // 10))
        row("prlimit(2): nofile + cpu on a child", timed(
            lambda i: [resource.prlimit(pids[i % 50], which, (1000, 1000))
                       for which in (resource.RLIMIT_NOFILE, resource.RLIMIT_CPU)], n))
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()
    setsid, prlimit = shutil.which("setsid"), shutil.which("prlimit")
    if setsid and prlimit:
        rounds = max(20, n // 50)
        row("spawn setsid true", timed(lambda i: subprocess.run([setsid, "true"], check=True),
                                       rounds), 1e3, "ms")
        row("spawn prlimit --nofile --cpu setsid true", timed(
            lambda i: subprocess.run([prlimit, "--nofile=64:64", "--cpu=30:30", setsid, "true"],
                                     check=True), rounds), 1e3, "ms")


def second_daemon_row(base: Path, rounds: int) -> None:
    state = StateDir.open(base / "locked")
    state.lock()
    twistd = str(Path(sys.executable).parent / "twistd")
    argv = [twistd, "--pidfile=", "-n", "proactor", "--state-dir", str(state.path),
            "--listen", "tcp:0:interface=127.0.0.1"]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, check=False, cwd=base)
        samples.append(time.perf_counter() - start)
        assert done.returncode == 1, done.stderr
    row("second daemon exits (twistd start included)", samples, 1e3, "ms")
    state.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000, help="samples per store row")
    args = parser.parse_args()
    print(f"{'':<44} {'n':>6} {'median':>10} {'p90':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        store_rows(base, args.repeat)
        proc_rows(args.repeat)
        second_daemon_row(base, 5)


if __name__ == "__main__":
    main()
