"""
A real ``twistd proactor`` writes its Prometheus text itself
(daemon/exposition.py): a ``/metrics`` scrape does not load ``prometheus_client``,
whose ``exposition`` module imports the standard library's ``ssl`` (and with it
``_ssl``, libssl and libcrypto).

What the daemon loads is read from outside, two ways: Python's own report of each
import as the daemon makes it (``PYTHONPROFILEIMPORTTIME``, on the daemon's stderr,
complete once the daemon has ended), and its ``/proc/PID/maps``, where the native
code that only ``prometheus_client`` would bring shows: the ``_ssl`` extension and
OpenSSL's libraries (twistd maps them at start today, through the ``ssl`` that
Twisted's own imports load; the maps part bites once the daemon keeps ``ssl`` out).
"""

from __future__ import annotations

import re

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families

from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import free_ports

#: The standard library's TLS: its extension module and the OpenSSL libraries it maps.
STDLIB_TLS = ("/_ssl.", "/libssl.", "/libcrypto.")

#: A line of ``-X importtime``'s report: ``import time: self | cumulative | module``.
_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$")


def stdlib_tls(pid: int) -> set[str]:
    """The paths of ``STDLIB_TLS`` that ``pid`` has mapped."""
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split()[-1] for line in maps if any(name in line for name in STDLIB_TLS)}


def imported(lines: list[str]) -> set[str]:
    """The modules a process reported importing (``PYTHONPROFILEIMPORTTIME``)."""
    return {match.group(1) for line in lines if (match := _IMPORTED.match(line))}


@pytest_twisted.ensureDeferred
async def test_a_scrape_loads_neither_prometheus_client_nor_tls(reactor, tmp_path):
    """``GET /metrics`` on a real daemon imports no ``prometheus_client`` module, and
    maps nothing of the standard library's TLS (``_ssl``, libssl, libcrypto) that the
    daemon had not mapped before the scrape."""
    with free_ports(10) as ports:
        config = tmp_path / "proactor.cfg"
        config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low}\n"
                          f"child_port_max = {ports.high}\n")
        daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                              env={"PYTHONPROFILEIMPORTTIME": "1"})
        try:
            await daemon.listening.addTimeout(30, reactor)
            before = stdlib_tls(daemon.pid or 0)
            code, text = await daemon.call(reactor, "GET", "/metrics")
            assert code == 200, text
            names = {family.name for family in text_string_to_metric_families(text.decode())}
            assert {"proactor_info", "proactor_jobs", "proactor_relay_seconds"} <= names
            assert stdlib_tls(daemon.pid or 0) - before == set()
        finally:
            await daemon.stop(reactor)
    modules = imported(daemon.lines)  # all of its stderr: the daemon has ended
    assert "turberfield_twisted.daemon.metrics" in modules  # the report is on
    assert {name for name in modules if name.split(".")[0] == "prometheus_client"} == set()
