"""
The ports a benchmark binds: one block of consecutive loopback ports held
for its whole run through the test kit's ``free_ports`` (a lock file per
block of ten, in ``TURBERFIELD_TWISTED_PORTS``'s window, else
20000-32767), so that no other benchmark and no test run beside it is
handed one of them, cut into named parts (a daemon's control port, its
workers' range, ...). No benchmark binds a port of the kit's window that
did not come from here.
"""

from __future__ import annotations

from typing import Any

import attrs

from turberfield_twisted.testing.ports import PortRange, free_ports

__all__ = ["BenchPorts", "bench_ports"]


@attrs.define(eq=False)
class BenchPorts:
    """``held`` (the kit's :class:`PortRange`, held until :meth:`release`) cut into ``parts``."""

    held: PortRange
    parts: dict[str, range]

    def __getitem__(self, name: str) -> range:
        """The ports of part ``name``."""
        return self.parts[name]

    def port(self, name: str) -> int:
        """The first (for a part of one, the only) port of part ``name``."""
        return self.parts[name].start

    def release(self) -> None:
        """Let other benchmarks and test runs have these ports again."""
        self.held.release()

    def __enter__(self) -> BenchPorts:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def bench_ports(**sizes: int) -> BenchPorts:
    """
    Hold ``sum(sizes)`` free consecutive ports (``free_ports``) and cut them,
    in the order given, into parts named as ``sizes``: ``bench_ports(api=1,
    children=100)``. Raise the kit's ``NoFreeRange`` if no block is free.
    """
    if not sizes or min(sizes.values()) < 1:
        raise ValueError(f"every part needs at least one port: {sizes}")
    held = free_ports(sum(sizes.values()))
    parts, start = {}, held.low
    for name, size in sizes.items():
        parts[name] = range(start, start + size)
        start += size
    return BenchPorts(held, parts)
