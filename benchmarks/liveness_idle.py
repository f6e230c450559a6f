"""
What liveness costs the daemon when nothing else happens (issue 23): a
daemon with 100 ready jobs (warm ``bench_hello`` workers, so that 100
start quickly on 2 cores), each checked every second, by ``GET /health``
(``--by http``) or by watchdog pings on its ready fd (``--by watchdog``),
or not at all (``--by none``, the baseline). Once every job is ready and
one interval has passed, it reads the daemon's CPU time (user + system,
``/proc/PID/stat``) at the start and the end of ``--seconds`` (60) with
no request made, and prints it as a share of one core (and its user and
system parts)::

    .venv/bin/python -P benchmarks/liveness_idle.py [--jobs 100] [--seconds 60]
        [--by http|watchdog|none ...] [--json PATH]

Bounded: at most 200 jobs and 600 s a run; the jobs get 300 s to be ready.
Loopback only, on ports held for each run through the test kit's
``free_ports`` (``bench_ports.py``: in ``TURBERFIELD_TWISTED_PORTS``'s
window, else 20000-32767). The daemon is this interpreter's ``twistd``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run with -P: the script's own folder is not on the path
from bench_ports import bench_ports  # noqa: E402
from jobs_load import WARM, Daemon, start_jobs  # noqa: E402
from probe import cpu_times  # noqa: E402


def live_keys(by: str) -> str:
    """The operations keys of the workers' section for ``by``."""
    if by == "none":
        return ""
    watchdog = "true" if by == "watchdog" else "false"
    return (f"live_interval = 1\nlive_timeout = 0.9\nlive_failures = 3\n"
            f"live_watchdog = {watchdog}\n")


def run(by: str, jobs: int, seconds: float) -> dict[str, float | str | int]:
    """One daemon, ``jobs`` jobs checked ``by`` one way: its share of a core over ``seconds``."""
    work = Path(tempfile.mkdtemp(prefix="liveness-idle-"))
    ports = bench_ports(api=1, children=jobs + 10)
    daemon: Daemon | None = None
    try:
        daemon = Daemon(work, ports.port("api"), ports["children"][0], ports["children"][-1],
                        textwrap.dedent(f"""
            [{WARM}]
            greeting = hello
            warm = true
            """) + live_keys(by))
        start_jobs(daemon, jobs, WARM)
        time.sleep(2)  # a benchmark's settle time: every job's checks have begun
        pid = daemon.process.pid
        before, t0 = cpu_times(pid), time.monotonic()
        time.sleep(seconds)
        after, wall = cpu_times(pid), time.monotonic() - t0
        user, system = after[0] - before[0], after[1] - before[1]
        used = user + system
        _, listed = daemon.call("GET", "/jobs")
        ready = sum(1 for job in listed["jobs"] if job["state"] == "ready")
        restarts = sum(job["restarts"] for job in listed["jobs"])
        return {"by": by, "jobs": jobs, "ready": ready, "restarts": restarts,
                "cpu_seconds": round(used, 3), "wall_seconds": round(wall, 1),
                "cpu_percent": round(100 * used / wall, 2),
                "user_percent": round(100 * user / wall, 2),
                "system_percent": round(100 * system / wall, 2)}
    finally:
        if daemon is not None:
            daemon.stop()
        ports.release()
        if os.environ.get("LIVENESS_IDLE_KEEP"):
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--by", action="append", choices=("http", "watchdog", "none"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not 1 <= args.jobs <= 200 or not 1 <= args.seconds <= 600:
        parser.error("at most 200 jobs and 600 seconds")
    rows = [run(by, args.jobs, args.seconds) for by in (args.by or ["none", "http", "watchdog"])]
    print(f"{'checks':<10} {'jobs':>5} {'ready':>6} {'restarts':>9} {'cpu s':>8} {'wall s':>7}"
          f" {'% core':>7} {'% user':>7} {'% sys':>7}")
    for row in rows:
        print(f"{row['by']:<10} {row['jobs']:>5} {row['ready']:>6} {row['restarts']:>9}"
              f" {row['cpu_seconds']:>8} {row['wall_seconds']:>7} {row['cpu_percent']:>7}"
              f" {row['user_percent']:>7} {row['system_percent']:>7}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
