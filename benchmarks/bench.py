"""
``make bench``: this daemon side by side with circus, supervisord and
Twisted's procmon, in interleaved rounds of one run, as ratios to a
baseline measured in the same run.

Run from the repository root (``make bench`` installs the ``bench`` extra)::

    .venv/bin/python -P benchmarks/bench.py [--rounds N] [--fanout N] [--json PATH]

Every figure is a median over rounds, and every ratio divides two medians
taken in the same run, so that a noisy shared machine slows both alike.
Loopback only, on one block of ports held for the whole run through the
test kit's ``free_ports`` (``bench_ports.py``; :data:`PORTS` says which
part is whose), so that another bench or a test run beside it never
shares one; every load loop is bounded in count and time, and no round
starts that might end after ``--budget`` seconds. The services rows are
``service_rows.py``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ports import BenchPorts, bench_ports
from cold_start import DECLARED_KINDS, clients, declared, templates
from managers import (
    COLD,
    WARM,
    Circus,
    Floor,
    Manager,
    Proactor,
    Procmon,
    Supervisor,
)
from probe import answers, cpu_seconds, rss_kib, uss_kib, wait_answering
from report import summarize, table
from service_rows import SERVICE_PORTS, ServiceRows

HERE = Path(__file__).resolve().parent
#: The parts of the run's ports (bench_ports), in order, and their sizes: this daemon's
#: control API and its workers' range; the peers' workers (circus, supervisord and procmon:
#: for the fan-outs, and for the peers started with theirs declared); the single worker of
#: the launch and restart rows; circus's control (and pubsub), supervisord's; this daemon's
#: workers when started declared (by proactord, then by twistd); the controls of the daemons
#: started so (circus's two); the services rows'.
PORTS = {"api": 1, "ours": 200, "peers": 100, "one": 1, "circus_control": 2,
         "supervisor_control": 1, "declared": 100, "declared_proactor": 1,
         "declared_twistd": 1, "declared_circus": 2, "declared_supervisord": 1,
         "services": SERVICE_PORTS}
RUNTIME = "turberfield_twisted.worker"

Samples = dict[str, list[float]]


def _now() -> float:
    return time.perf_counter()


def time_import(module: str) -> float:
    """
    Seconds for a fresh ``python -P`` to start and ``import module`` (it then
    leaves at once: tearing the interpreter down is no part of an import).
    """
    start = _now()
    subprocess.run([sys.executable, "-P", "-c", f"import {module}, os; os._exit(0)"],
                   check=True, timeout=60, stdin=subprocess.DEVNULL)
    return _now() - start


def launch_one(manager: Manager, samples: Samples, key: str, port: int,
               module: str | None = None) -> None:
    """Launch one worker; time until it answers; note its USS; stop it."""
    start = _now()
    if isinstance(manager, Proactor):
        [port] = manager.launch([0], module)
    else:
        manager.launch([port])
    answered = wait_answering([port], 60, 0.001)[port]
    samples[key].append(answered - start)
    pid = manager.pid_on(port) if isinstance(manager, Proactor) else _bare_pid(port)
    samples[f"uss {key}"].append(uss_kib(pid))
    manager.stop([port])


def _bare_pid(port: int) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/pid")
    pid = int(conn.getresponse().read())
    conn.close()
    return pid


def restart_one(manager: Manager, samples: Samples, key: str, port: int,
                module: str | None = None) -> None:
    """
    One worker up for over a second (on ``port``; ours on the port it
    chooses); kill -9; time until it answers again.
    """
    if isinstance(manager, Proactor):
        [port] = manager.launch([0], module)
    else:
        manager.launch([port])
    wait_answering([port], 60, 0.005)
    time.sleep(1.1)  # past procmon's threshold: every manager restarts at once
    pid = manager.pid_on(port) if isinstance(manager, Proactor) else _bare_pid(port)
    start = _now()
    os.kill(pid, signal.SIGKILL)  # no code of it runs again: any answer now is a new worker's
    answered = wait_answering([port], 60, 0.001)[port]
    samples[key].append(answered - start)
    manager.stop([port])


def fan_out(manager: Manager, samples: Samples, key: str, count: int, peers: list[int],
            module: str | None = None) -> None:
    """
    ``count`` workers asked for at once (on the first of ``peers``; ours on
    the ports it chooses); time until all answer; daemon RSS before and
    after, and its CPU meanwhile.
    """
    pid = manager.pid
    if pid:
        samples[f"rss0 {key}"].append(rss_kib(pid))
        cpu = cpu_seconds(pid)
    start = _now()
    if isinstance(manager, Proactor):
        ports = manager.launch([0] * count, module)
    else:
        ports = manager.launch(peers[:count])
    seen = wait_answering(ports, 180, 0.02)
    samples[key].append(max(seen.values()) - start)
    if pid:
        samples[f"cpu {key}"].append(cpu_seconds(pid) - cpu)
        samples[f"rss {key}"].append(rss_kib(pid))
    if isinstance(manager, Proactor) and module == WARM:
        samples["uss warm worker, at fan-out"].append(uss_kib(manager.pid_on(ports[-1])))
    manager.stop(ports)


def relay(ours: Proactor, samples: Samples, guid: str, port: int, connections: int,
          seconds: float) -> None:
    """Requests per second through the relay and directly, interleaved."""
    urls = {"direct": (f"http://127.0.0.1:{port}/", []),
            "relay": (f"http://127.0.0.1:{ours.api_port}/jobs/{guid}/proxy/",
                      [f"Authorization: Bearer {ours.token}"])}
    for kind in (["direct", "relay"] if len(samples[f"direct {connections}"]) % 2 == 0
                 else ["relay", "direct"]):
        url, headers = urls[kind]
        done = subprocess.run(
            [sys.executable, "-P", str(HERE / "load.py"), url, str(connections),
             str(seconds), "200000", *headers],
            capture_output=True, text=True, timeout=seconds + 60, check=True)
        result = json.loads(done.stdout)
        if result["errors"]:
            raise RuntimeError(f"{kind} load: {result}")
        samples[f"{kind} {connections}"].append(result["requests"] / result["seconds"])


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Every measurement, in rounds, on ports held for the run; the samples and what it was."""
    with bench_ports(**PORTS) as ports:
        return measure(options, ports)


def measure(options: argparse.Namespace, ports: BenchPorts) -> dict[str, Any]:
    """Every measurement, in rounds, on ``ports`` (:data:`PORTS`'s parts)."""
    work = Path(tempfile.mkdtemp(prefix="proactor-bench-"))
    samples: Samples = defaultdict(list)
    one, peers = ports.port("one"), list(ports["peers"])
    ours = Proactor(work / "proactor", ports.port("api"), ports["ours"][0], ports["ours"][-1])
    circus = Circus(work / "circus", [*peers, one], ports.port("circus_control"))
    supervisor = Supervisor(work / "supervisor", [*peers, one], ports.port("supervisor_control"))
    procmon, floor = Procmon(), Floor()
    managers: list[Manager] = [ours, circus, supervisor, procmon, floor]
    services = ServiceRows(ours, work, ports["services"])
    #: The daemons started with their workers declared: their workers' ports, their control's.
    declared_on = {"proactor": list(ports["declared"]), "twistd": list(ports["declared"]),
                   "circus": peers, "supervisord": peers}
    began = _now()
    try:
        for manager in managers:
            manager.start()
        services.start()
        samples["rss idle proactor"].append(rss_kib(ours.pid or 0))
        samples["rss idle circus"].append(rss_kib(circus.pid or 0))
        samples["rss idle supervisord"].append(rss_kib(supervisor.pid or 0))
        # warm-up: every path once, not counted
        scratch: Samples = defaultdict(list)
        launch_one(floor, scratch, "x", one)
        launch_one(ours, scratch, "x", 0, COLD)
        launch_one(ours, scratch, "x", 0, WARM)
        [relay_port] = ours.launch([0])
        wait_answering([relay_port], 60, 0.01)
        relay_guid = ours.jobs[relay_port]
        assert answers(relay_port)
        templates(ours, samples)  # the warm module's, launched from above
        fan_rounds = {i * options.rounds // max(1, options.fanout_rounds)
                      for i in range(min(options.fanout_rounds, options.rounds))}
        longest = {True: 0.0, False: 0.0}  # of the rounds with fan-outs, and of the others
        for number in range(options.rounds):
            if _now() - began + longest[number in fan_rounds] > options.budget:
                print(f"budget of {options.budget:g}s reached after {number} rounds",
                      file=sys.stderr)
                break
            started = _now()
            rotate = number % 3
            for pair in range(4):  # back to back, so that both see the same machine
                first, second = ("klein", RUNTIME) if (pair + rotate) % 2 else (RUNTIME, "klein")
                took = {first: time_import(first), second: time_import(second)}
                for module, seconds in took.items():
                    samples[f"import {module}"].append(seconds)
                samples["import diff"].append(took[RUNTIME] - took["klein"])
            singles: list[Callable[[], None]] = [
                lambda: launch_one(floor, samples, "launch bare", one),
                lambda: launch_one(ours, samples, "launch proactor", 0, COLD),
                lambda: launch_one(ours, samples, "launch proactor warm", 0, WARM),
            ]
            # Four of each a round (twelve in three): a single start moves by tens of ms
            # with what else runs, and six samples left the launch row's median noise.
            for step in (singles[rotate:] + singles[:rotate]) * 4:
                step()
            restarts: list[Callable[[], None]] = [
                lambda: restart_one(ours, samples, "restart proactor", 0),
                lambda: restart_one(ours, samples, "restart proactor warm", 0, WARM),
                lambda: restart_one(procmon, samples, "restart procmon", one),
                lambda: restart_one(circus, samples, "restart circus", one),
                lambda: restart_one(supervisor, samples, "restart supervisord", one),
            ]
            for step in (restarts[rotate:] + restarts[:rotate]) * 2:
                step()
            for connections in (1, 10):
                relay(ours, samples, relay_guid, relay_port, connections, options.load_seconds)
            services.round(samples, number, options.load_seconds)
            if number in fan_rounds:
                fans: list[Callable[[], None]] = [
                    lambda: fan_out(ours, samples, "fan-out proactor", options.fanout, peers,
                                    COLD),
                    lambda: fan_out(ours, samples, "fan-out proactor warm", options.fanout,
                                    peers, WARM),
                    lambda: fan_out(circus, samples, "fan-out circus", options.fanout, peers),
                    lambda: fan_out(supervisor, samples, "fan-out supervisord", options.fanout,
                                    peers),
                    lambda: fan_out(procmon, samples, "fan-out procmon", options.fanout, peers),
                    lambda: clients(ours, samples, "clients proactor", options.fanout, COLD),
                    lambda: clients(ours, samples, "clients proactor warm", options.fanout,
                                    WARM),
                    # Each daemon started twice a fan-out round, the kinds taking turns: the
                    # CPU ratio of two starts moved 1.29 to 1.52 from run to run.
                    *(lambda kind=kind: declared(kind, work, declared_on[kind][:options.fanout],
                                                 ports.port(f"declared_{kind}"), samples)
                      for kind in DECLARED_KINDS * 2),
                ]
                for step in fans[rotate:] + fans[:rotate]:
                    step()
            longest[number in fan_rounds] = max(longest[number in fan_rounds], _now() - started)
            print(f"round {number + 1} done in {_now() - started:.0f}s", file=sys.stderr)
        ours.stop([relay_port])
        done = subprocess.run([sys.executable, "-P", str(HERE / "inprocess.py")],
                              capture_output=True, text=True, timeout=300, check=True)
        samples.update(json.loads(done.stdout))
    finally:
        try:
            services.close()
        except Exception as exc:  # the managers must still be closed
            print(f"closing the services: {exc!r}", file=sys.stderr)
        for manager in managers:
            try:
                manager.close()
            except Exception as exc:  # the others must still be closed
                print(f"closing {manager.name}: {exc!r}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, "
                   f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "seconds": round(_now() - began, 1),
        "options": vars(options),
        "samples": {key: values for key, values in samples.items()},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--fanout", type=int, default=100,
                        help="workers asked for at once (default 100)")
    parser.add_argument("--fanout-rounds", type=int, default=1,
                        help="how many rounds include the fan-outs (default 1)")
    parser.add_argument("--load-seconds", type=float, default=1.5,
                        help="seconds of each relay load run (default 1.5)")
    parser.add_argument("--budget", type=float, default=720.0,
                        help="no round starts that might end after this (default 720 s)")
    parser.add_argument("--json", default="benchmarks/results.json",
                        help="where the samples and the table go as JSON")
    options = parser.parse_args(argv)
    if not 1 <= options.fanout <= 100 or not 1 <= options.rounds <= 20:
        parser.error("--fanout is 1..100 and --rounds 1..20")
    return options


def main() -> None:
    options = parse_args()
    result = run(options)
    rows = summarize(result)
    result["rows"] = rows
    Path(options.json).write_text(json.dumps(result, indent=1))
    print(table(result, rows))
    print(f"\n(samples and rows in {options.json})")


if __name__ == "__main__":
    main()
