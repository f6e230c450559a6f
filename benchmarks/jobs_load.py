"""
The control API under many clients at once (issue 20, item 9): a daemon
with 100 jobs (warm ``bench_hello`` workers, so that 100 start quickly on
2 cores); 200 client threads send 1,000 ``GET /jobs`` between them, each
on a new connection, as a burst, while one more thread asks ``GET
/health`` every 0.1 s. It prints the connection resets and other errors,
the p50, p99 and largest latency of ``GET /jobs``, and the p50 and largest
of ``/health``::

    .venv/bin/python -P benchmarks/jobs_load.py [--jobs 100] [--clients 200]
        [--requests 1000] [--bystanders N] [--cold] [--json PATH]

``--bystanders N`` runs N more processes (``sleep``) on the host for the
run, that belong to no job: what the daemon reads per job should not grow
with them.

Bounded: at most 200 jobs, 500 clients, 5,000 requests and 2,000
bystanders; each request
times out after 60 s, the load after 300 s, the start of the jobs after
300 s. Loopback only, on ports held for the run through the test kit's
``free_ports`` (``bench_ports.py``: in ``TURBERFIELD_TWISTED_PORTS``'s
window, as the test suite, which runs it small, sets it, else
20000-32767). The daemon is this interpreter's ``twistd``; a
``PYTHONPATH`` set for the script is passed on to it (to measure another
checkout of the package).
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run with -P: the script's own folder is not on the path
from bench_ports import bench_ports  # noqa: E402

COLD, WARM = "turberfield_twisted.demo.hello", "bench_hello"
REQUEST_TIMEOUT, LOAD_DEADLINE, START_DEADLINE = 60.0, 300.0, 300.0


class Daemon:
    """
    ``twistd -n proactor`` with a config of its own in ``work``, on
    ``api_port``: the workers' sections are ``sections`` (by default the cold
    and the warm hello, each saying ``greeting = hello``).
    """

    def __init__(self, work: Path, api_port: int, low: int, high: int,
                 sections: str | None = None):
        self.work, self.api_port = work, api_port
        config = work / "proactor.cfg"
        if sections is None:
            sections = textwrap.dedent(f"""
                [{COLD}]
                greeting = hello

                [{WARM}]
                greeting = hello
                warm = true
                """)
        config.write_text(textwrap.dedent(f"""
            [proactor]
            listen_port = {api_port}
            child_port_min = {low}
            child_port_max = {high}
            ready_timeout = 120
            max_exited = 1000
            pythonpath = {HERE}
            """) + sections)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        twistd = str(Path(sys.executable).parent / "twistd")
        self.process = subprocess.Popen(
            [twistd, "--pidfile=", "-n", "--logfile", str(work / "proactor.log"), "proactor",
             "--config", str(config), "--state-dir", str(work / "state")],
            env=env, stdin=subprocess.DEVNULL, cwd=work)
        token = work / "state" / "admin.token"
        deadline = time.monotonic() + 30
        while not (token.exists() and self._up()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the daemon did not start: see {work / 'proactor.log'}")
            time.sleep(0.05)
        self.token = token.read_text().strip()

    def _up(self) -> bool:
        try:
            return get(self.api_port, "/health", "", 5)[0] == 200
        except OSError:
            return False

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One control API call (admin token) on a new connection: (status, JSON)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers={"Authorization": f"Bearer {self.token}"})
            response = conn.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGTERM, and wait (it stops every job first)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def get(port: int, path: str, token: str, timeout: float) -> tuple[int, bytes]:
    """``GET path`` on a new connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def kind_of(exc: BaseException) -> str:
    """How a request failed: reset, refused, timeout, closed or other."""
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNRESET:
        return "reset"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed"
    return "other"


def start_jobs(daemon: Daemon, count: int, module: str) -> None:
    """Launch ``count`` jobs of ``module`` and wait until every one is ready."""
    guids = []
    for _ in range(count):
        status, job = daemon.call("POST", "/jobs", {"module": module})
        if status != 201:
            raise RuntimeError(f"launch refused: {status} {job}")
        guids.append(job["guid"])
    deadline = time.monotonic() + START_DEADLINE
    for guid in guids:
        while True:
            _, job = daemon.call("GET", f"/jobs/{guid}?wait=ready&timeout=30")
            if job["state"] == "ready":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {guid} not ready: {job['state']}")


def load(daemon: Daemon, clients: int, requests: int, jobs: int) -> dict[str, Any]:
    """The burst, and /health beside it: what each saw."""
    lock = threading.Lock()
    left = [requests]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    health: list[float] = []
    health_errors: dict[str, int] = {}
    done = threading.Event()
    deadline = time.monotonic() + LOAD_DEADLINE
    go = threading.Barrier(clients + 1)

    def client() -> None:
        go.wait()
        while time.monotonic() < deadline:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            started = time.perf_counter()
            try:
                status, body = get(daemon.api_port, "/jobs", daemon.token, REQUEST_TIMEOUT)
                ok = status == 200 and len(json.loads(body)["jobs"]) == jobs
                kind = None if ok else f"status {status}"
            except Exception as exc:  # counted by kind, the run goes on
                kind = kind_of(exc)
            with lock:
                if kind is None:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[kind] = errors.get(kind, 0) + 1

    def prober() -> None:
        while not done.is_set() and time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                status, _ = get(daemon.api_port, "/health", "", REQUEST_TIMEOUT)
                if status == 200:
                    health.append(time.perf_counter() - started)
                else:
                    health_errors[f"status {status}"] = health_errors.get(f"status {status}", 0) + 1
            except Exception as exc:  # counted by kind
                health_errors[kind_of(exc)] = health_errors.get(kind_of(exc), 0) + 1
            done.wait(0.1)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    probe = threading.Thread(target=prober, daemon=True)
    for thread in threads:
        thread.start()
    probe.start()
    started = time.perf_counter()
    go.wait()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 1)
    elapsed = time.perf_counter() - started
    done.set()
    probe.join(REQUEST_TIMEOUT + 1)
    return {"answered": len(latencies), "errors": errors, "seconds": elapsed,
            "latencies": latencies, "health": health, "health_errors": health_errors}


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (0 if none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--bystanders", type=int, default=0,
                        help="this many unrelated sleeping processes during the run")
    parser.add_argument("--cold", action="store_true", help="cold workers (the demo)")
    parser.add_argument("--json", type=Path, help="write every sample here too")
    args = parser.parse_args()
    if not (1 <= args.jobs <= 200 and 1 <= args.clients <= 500 and 1 <= args.requests <= 5000
            and 0 <= args.bystanders <= 2000):
        parser.error("at most 200 jobs, 500 clients, 5000 requests and 2000 bystanders")
    ports = bench_ports(api=1, children=args.jobs + 19)
    work = Path(tempfile.mkdtemp(prefix="jobs-load-"))
    bystanders = [subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
                  for _ in range(args.bystanders)]
    daemon = None
    result: dict[str, Any] | None = None
    try:
        daemon = Daemon(work, ports.port("api"), ports["children"][0], ports["children"][-1])
        began = time.perf_counter()
        start_jobs(daemon, args.jobs, COLD if args.cold else WARM)
        print(f"{args.jobs} jobs ready in {time.perf_counter() - began:.1f}s", flush=True)
        result = load(daemon, args.clients, args.requests, args.jobs)
    finally:
        if daemon is not None:
            daemon.stop()
        for sleeper in bystanders:
            sleeper.kill()
            sleeper.wait(10)
        ports.release()
        if result is None:
            print(f"failed; the daemon's log: {work / 'proactor.log'}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    lat, health = result["latencies"], result["health"]
    resets = result["errors"].get("reset", 0)
    print(f"GET /jobs x{args.requests} from {args.clients} clients, {args.jobs} jobs,"
          f" {args.bystanders} bystanders:"
          f" {result['answered']} answered in {result['seconds']:.1f}s")
    print(f"  connection resets: {resets}; other errors: "
          f"{ {k: v for k, v in result['errors'].items() if k != 'reset'} or 'none'}")
    print(f"  latency p50 {quantile(lat, 0.5):.3f}s  p99 {quantile(lat, 0.99):.3f}s"
          f"  max {max(lat, default=0):.3f}s")
    print(f"  /health x{len(health)}: p50 {quantile(health, 0.5):.3f}s"
          f"  max {max(health, default=0):.3f}s; errors: {result['health_errors'] or 'none'}")
    print(f"  mean of GET /jobs {statistics.fmean(lat) if lat else 0:.3f}s")
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in result.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
