"""
``make bench``'s plumbing against this daemon as it is now: the benchmark's
own manager starts a real daemon, launches cold and warm workers, and its
relay measure gets only 200s through ``/jobs/{guid}/proxy/``. Figures are
not checked (performance is measured, not asserted): this catches a bench
that no longer speaks the API, as when the relay moved under ``/proxy/``.
Loopback ports from the kit's free_ports (the load scenario takes its own).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from turberfield_twisted.testing.ports import PortRange
from turberfield_twisted.testing.procs import children_of

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


@pytest.fixture
def ports(take_ports: Any) -> PortRange:
    """The bench's daemon's: its control API on the first, its workers on the others."""
    return take_ports(20)


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``benchmarks/bench.py`` as a module; its path and modules go after."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # it puts benchmarks/ first
    spec = importlib.util.spec_from_file_location("_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for name in ("managers", "probe", "service_rows", "bare_worker", "cold_start", "report",
                 "bench_ports"):
        sys.modules.pop(name, None)


def test_the_bench_launches_and_relays_through_the_daemon(bench: Any, tmp_path: Path,
                                                           ports: PortRange) -> None:
    """Cold and warm launches answer; every relayed and direct request gets a 200."""
    ours = bench.Proactor(tmp_path / "proactor", ports.low, ports.low + 1, ports.high)
    ours.start()
    try:
        samples: dict[str, list[float]] = defaultdict(list)
        bench.launch_one(ours, samples, "cold", 0, bench.COLD)
        bench.launch_one(ours, samples, "warm", 0, bench.WARM)
        [port] = ours.launch([0])
        bench.wait_answering([port], 60, 0.01)
        bench.relay(ours, samples, ours.jobs[port], port, 1, 0.2)  # raises on any non-200
        assert len(samples["relay 1"]) == len(samples["direct 1"]) == 1
        assert len(samples["cold"]) == len(samples["warm"]) == 1
        ours.stop([port])
    finally:
        ours.close()
    assert ours.process.returncode == -signal.SIGTERM  # twistd ends by the signal it got
    assert children_of(os.getpid()) == []


def test_the_bench_starts_a_daemon_with_its_workers_declared(bench: Any, tmp_path: Path,
                                                            ports: PortRange) -> None:
    """
    A daemon started with 3 jobs declared in its config is timed until all 3 answer,
    its own CPU and RSS read from /proc; once stopped, nothing it started is left.
    """
    samples: dict[str, list[float]] = defaultdict(list)
    workers = list(ports.ports)[1:4]
    sys.modules["cold_start"].declared("proactor", tmp_path, workers, ports.low, samples)
    assert [len(samples[key]) for key in ("start proactor", "start cpu proactor",
                                          "start rss proactor")] == [1, 1, 1]
    assert samples["start cpu proactor"][0] > 0 and samples["start rss proactor"][0] > 0
    assert not any(map(sys.modules["probe"].listens, workers))
    assert children_of(os.getpid()) == []


def test_the_bench_launches_and_waits_from_many_clients_at_once(bench: Any, tmp_path: Path,
                                                                ports: PortRange) -> None:
    """
    Clients at once each launch a job and wait for it to be ready (POST /jobs, then
    ?wait=ready); the daemon's CPU meanwhile is read, and a warm template's memory.
    """
    cold_start = sys.modules["cold_start"]
    ours = bench.Proactor(tmp_path / "proactor", ports.low, ports.low + 1, ports.high)
    ours.start()
    try:
        samples: dict[str, list[float]] = defaultdict(list)
        cold_start.clients(ours, samples, "clients", 4, bench.WARM)
        assert len(samples["clients"]) == len(samples["cpu clients"]) == 1
        assert ours.jobs == {}  # each stopped
        cold_start.templates(ours, samples)
        assert len(samples["rss template"]) == len(samples["uss template"]) == 1
    finally:
        ours.close()
    assert children_of(os.getpid()) == []


def test_the_bench_serves_a_bare_worker_on_a_service_address_and_rolls_warm_ones_out(
        bench: Any, tmp_path: Path, ports: PortRange, take_ports: Any) -> None:
    """
    The bare Klein worker, run as a service's instance (bare_service.py: the socket by
    systemd's convention, through Twisted's systemd: endpoint), answers on the service's
    address; the rollout measure of 4 warm instances counts its requests and losses.
    """
    rows = sys.modules["service_rows"]
    addresses = take_ports(rows.SERVICE_PORTS)
    ours = bench.Proactor(tmp_path / "proactor", ports.low, ports.low + 1, ports.high)
    ours.start()
    try:
        measures = rows.ServiceRows(ours, tmp_path, addresses.ports[:rows.SERVICE_PORTS])
        measures._service("bare", rows.BARE_SERVICE, measures.bare_address, 2)
        assert bench.answers(measures.bare_address)
        measures._service("warm", rows.WARM, measures.warm_address, 4)
        samples: dict[str, list[float]] = defaultdict(list)
        measures._rollout(samples)
        assert samples["rollout lost"] == [0.0] and samples["rollout requests"][0] > 0
        for name in ("bare", "warm"):
            ours.call("DELETE", f"/services/{name}")
    finally:
        ours.close()
    assert children_of(os.getpid()) == []


def test_the_load_scenario_runs_against_the_daemon(tmp_path: Path) -> None:
    """benchmarks/jobs_load.py, small (2 jobs, 4 clients, 10 requests): every GET /jobs is
    answered, the summary is printed, and nothing it started is left."""
    script = BENCH.parent / "jobs_load.py"
    done = subprocess.run([sys.executable, "-P", str(script), "--jobs", "2", "--clients", "4",
                           "--requests", "10", "--json", str(tmp_path / "load.json")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "10 answered" in done.stdout and "connection resets: 0" in done.stdout, done.stdout
    assert len(json.loads((tmp_path / "load.json").read_text())["latencies"]) == 10
    assert children_of(os.getpid()) == []
