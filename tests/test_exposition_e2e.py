"""
A real ``twistd proactor`` writes its Prometheus text itself
(daemon/exposition.py): a ``/metrics`` scrape does not load ``prometheus_client``,
whose ``exposition`` module imports the standard library's ``ssl`` (and with it
``_ssl``, libssl and libcrypto).

What the daemon has loaded is read from outside, from its ``/proc/PID/maps``:
pure-Python modules do not show there, so the test looks for the native code that
only ``prometheus_client`` would bring to this daemon, the ``_ssl`` extension and
OpenSSL's libraries, before and after a scrape.
"""

from __future__ import annotations

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families

#: The standard library's TLS: its extension module and the OpenSSL libraries it maps.
STDLIB_TLS = ("/_ssl.", "/libssl.", "/libcrypto.")


def stdlib_tls(pid: int) -> set[str]:
    """The paths of ``STDLIB_TLS`` that ``pid`` has mapped."""
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split()[-1] for line in maps if any(name in line for name in STDLIB_TLS)}


@pytest_twisted.ensureDeferred
async def test_a_scrape_maps_no_tls_library_that_was_not_there_before(daemons, reactor):
    """After ``GET /metrics`` the daemon has mapped nothing of the standard library's
    TLS (``_ssl``, libssl, libcrypto) that it had not mapped before the scrape."""
    daemon = await daemons(size=10)
    before = stdlib_tls(daemon.pid)
    code, text = await daemon.call(reactor, "GET", "/metrics")
    assert code == 200, text
    names = {family.name for family in text_string_to_metric_families(text.decode())}
    assert {"proactor_info", "proactor_jobs", "proactor_relay_seconds"} <= names
    assert stdlib_tls(daemon.pid) - before == set()
