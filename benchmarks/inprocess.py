"""
What the daemon itself spends, measured inside one process: its CPU per
launch with no jobs and with 100 (port choice, config, bookkeeping: no
process is started), and how long ``spawn()`` holds the reactor while
workers start around it. Prints the samples (seconds) as JSON. Its
ports (the fake daemon's child range, and the real one's) are held for
the run through the test kit's ``free_ports`` (``bench_ports.py``).

``python -P inprocess.py``
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import react

from turberfield_twisted import Initiator
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.testing.fakes import FakeLauncher, FakeProcessReactor
from turberfield_twisted.worker import _asyncio  # noqa: F401  (installs the asyncio reactor)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # with -P: this folder is not on it
from bench_ports import bench_ports

MODULE = "turberfield_twisted.demo.hello"
JOBS = 100
#: The child ranges of the launches with no process started, and of the real spawns.
PORTS = {"launch": 300, "spawn": 100}


def _config(low: int, high: int, starting: int = 2) -> Any:
    return parse_config(f"[bench]\nlisten_port = 0\nchild_port_min = {low}\n"
                        f"child_port_max = {high}\nready_timeout = 60\n"
                        f"max_starting = {starting}\n\n[{MODULE}]\ngreeting = hello\n")


class _Ok:
    code = 200

    def content(self) -> Deferred[bytes]:
        return succeed(b"{}")


class _Healthy:
    def get(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return succeed(_Ok())


def launch_costs(ports: range) -> dict[str, list[float]]:
    """
    Seconds of one launch (no process; its port of ``ports``) with 0..9 jobs
    and with 100..109, 5 times.
    """
    at0, atn = [], []
    for _ in range(5):
        reactor = FakeProcessReactor()
        launcher = FakeLauncher()
        init = Initiator(None, guid="bench", cfg=_config(ports[0], ports[-1], JOBS + 20),
                         reactor=reactor, launcher=launcher, http=_Healthy())
        times = []
        for _ in range(JOBS + 10):
            start = time.perf_counter()
            Deferred.fromCoroutine(init.launch(MODULE))
            times.append(time.perf_counter() - start)
            launcher.spawned[-1].listen()
        at0.append(statistics.median(times[:10]))
        atn.append(statistics.median(times[JOBS:]))
    return {"launch cost at 0": at0, "launch cost at N": atn}


async def spawn_block(reactor: Any, ports: range, count: int = 20) -> dict[str, list[float]]:
    """
    How long each real spawn() call takes while other workers start
    (max_starting 2), on ``ports``.
    """
    init = Initiator(None, guid="bench", cfg=_config(ports[0], ports[-1]), reactor=reactor)
    init.startService()
    cold = init.launcher.launcher_of(MODULE).cold  # type: ignore[attr-defined]
    spawn, took = cold.spawn, []

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return spawn(*args)
        finally:
            took.append(time.perf_counter() - start)

    cold.spawn = timed
    try:
        guids = [await init.launch(MODULE) for _ in range(count)]
        await gatherResults([init.ready(guid, timeout=60) for guid in guids])
    finally:
        await init.stopService()
    ordered = sorted(took)
    return {"spawn p50": [statistics.median(took)],
            "spawn p90": [ordered[max(0, int(0.9 * len(ordered)) - 1)]]}


def main() -> None:
    with bench_ports(**PORTS) as ports:
        result = launch_costs(ports["launch"])

        async def measure(reactor: Any) -> None:
            result.update(await spawn_block(reactor, ports["spawn"]))

        try:
            react(lambda reactor: Deferred.fromCoroutine(measure(reactor)))
        except SystemExit as exc:
            if exc.code:
                raise
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
