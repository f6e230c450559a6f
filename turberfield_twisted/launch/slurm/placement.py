"""
Where a Slurm job's worker really runs, so that its report of where it
listens (``POST /jobs/{guid}/listening``, with the job's token) is believed
only when Slurm agrees: the step it names must be of the Slurm job named by
the job's guid, and the address it gives must be one that the step's node
name resolves to on the daemon's host (on the test cluster, ``localhost``:
127.0.0.1). Anything else is refused, and the daemon never probes, relays
to or pushes config (with the job's token) to that address.

Slurm is asked with ``squeue --jobs=JOBID --format=%j|%N`` (the job's name
and its node). The node's name is resolved here, not its ``NodeAddr``: a
cluster whose node names do not resolve on the daemon's host needs them in
its ``/etc/hosts`` (or DNS).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorThreads
from twisted.internet.threads import deferToThreadPool

from turberfield_twisted.errors import PlacementRefused, PlacementUnchecked

__all__ = ["CommandRunner", "Ran", "Resolver", "check_place", "resolver"]


@attrs.frozen
class Ran:
    """What a command did: its exit ``code`` (None: killed by a signal), stdout and stderr."""

    code: int | None
    out: str
    err: str


#: ``run(argv)`` runs a command and fires with what it did.
CommandRunner = Callable[[list[str]], Deferred[Ran]]


#: ``resolve(name)`` fires with the IP addresses host name ``name`` has here.
Resolver = Callable[[str], Deferred[frozenset[str]]]


def _addresses(name: str) -> frozenset[str]:
    try:
        found = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)
    except OSError:
        return frozenset()
    return frozenset(str(ipaddress.ip_address(str(entry[4][0]).split("%")[0])) for entry in found)


def resolver(reactor: IReactorFromThreads) -> Resolver:
    """
    A :data:`Resolver` that asks ``getaddrinfo`` in ``reactor``'s thread pool
    (the reactor must have one: an ``IReactorThreads``, as the asyncio reactor is).
    """

    def resolve(name: str) -> Deferred[frozenset[str]]:
        pool = IReactorThreads(reactor).getThreadPool()
        return deferToThreadPool(reactor, pool, _addresses, name)

    return resolve


async def check_place(run: CommandRunner, squeue: str, resolve: Resolver, guid: str,
                      host: str, step: str | None) -> str:
    """
    The node on which job ``guid``'s worker, saying it listens on ``host``
    in Slurm step ``step``, runs. Raise :class:`PlacementRefused` if the
    step is not that job's or ``host`` is not its node's, and
    :class:`PlacementUnchecked` if Slurm can't be asked.
    """
    if step is None:
        raise PlacementRefused(f"job {guid} did not say which Slurm step it runs in")
    slurm_job = step.split(".")[0]
    ran = await run([squeue, "--noheader", f"--jobs={slurm_job}", "--format=%j|%N"])
    if ran.code != 0:
        why = ran.err.strip()[:300] or f"exit {ran.code}"
        raise PlacementUnchecked(f"could not ask Slurm where job {guid} runs: {why}")
    lines = [line for line in ran.out.splitlines() if line.strip()]
    name, _, node = (lines[0] if len(lines) == 1 else "").strip().partition("|")
    if name != guid:
        raise PlacementRefused(f"Slurm job {slurm_job} is not job {guid}'s")
    if not node or any(mark in node for mark in "[],"):
        raise PlacementRefused(f"Slurm job {slurm_job} runs on no one node ({node or 'none'})")
    addresses = await resolve(node)
    if host not in addresses:
        known = ", ".join(sorted(addresses)) or "nothing here"
        raise PlacementRefused(f"job {guid} says it listens on {host}, but Slurm runs it on"
                               f" {node} ({known})")
    return node
