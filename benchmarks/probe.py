"""
What the benchmark looks at from outside: which loopback ports listen, whether
a worker answers, and how much memory and CPU a process holds and has used.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterable

__all__ = ["answers", "cpu_seconds", "listens", "rss_kib", "uss_kib", "wait_answering",
           "wait_closed", "wait_gone"]


def listens(port: int) -> bool:
    """
    Whether something accepts TCP connections on 127.0.0.1:port: one connect,
    closed at once (refused at once on loopback when nothing listens). Not
    ``/proc/net/tcp``: the kernel walks its whole socket table to write that
    file, 9 ms a read on this project's machine, which made every poll of a
    launch row slower than the launch it timed.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def answers(port: int, path: str = "/health", timeout: float = 2.0) -> bool:
    """Whether ``GET path`` on 127.0.0.1:port answers 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_answering(ports: Iterable[int], timeout: float, interval: float) -> dict[int, float]:
    """
    When (``perf_counter``) each port first answered ``GET /health`` 200;
    raise TimeoutError after ``timeout`` seconds. Each port not yet answering
    is asked every ``interval`` seconds; one that nothing listens on refuses
    the connect at once, so a poll costs microseconds a port.
    """
    pending = set(ports)
    seen: dict[int, float] = {}
    deadline = time.perf_counter() + timeout
    while pending:
        for port in sorted(pending):
            if answers(port):
                seen[port] = time.perf_counter()
                pending.discard(port)
        if not pending:
            break
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(seen) + len(pending)} never answered")
        time.sleep(interval)
    return seen


def wait_closed(ports: Iterable[int], timeout: float = 30.0) -> None:
    """Return once none of ``ports`` listens; TimeoutError after ``timeout`` seconds."""
    wanted = set(ports)
    deadline = time.perf_counter() + timeout
    while listening := sorted(port for port in wanted if listens(port)):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"ports still listening: {listening}")
        time.sleep(0.02)


def wait_gone(pids: Iterable[int], timeout: float = 30.0) -> None:
    """Return once none of ``pids`` runs (zombies count as gone)."""
    deadline = time.perf_counter() + timeout
    for pid in pids:
        while _alive(pid):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"pid {pid} still runs")
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _field(path: str, names: tuple[str, ...]) -> float:
    total = 0
    with open(path) as f:
        for line in f:
            if line.startswith(names):
                total += int(line.split()[1])
    return float(total)


def rss_kib(pid: int) -> float:
    """Resident set size of ``pid`` in KiB."""
    return _field(f"/proc/{pid}/status", ("VmRSS:",))


def uss_kib(pid: int) -> float:
    """Unique set size (private clean + dirty pages) of ``pid`` in KiB."""
    return _field(f"/proc/{pid}/smaps_rollup", ("Private_Clean:", "Private_Dirty:"))


def cpu_times(pid: int) -> tuple[float, float]:
    """CPU time (user, system) of process ``pid`` itself so far, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` itself so far, from ``/proc/PID/stat``."""
    return sum(cpu_times(pid))
