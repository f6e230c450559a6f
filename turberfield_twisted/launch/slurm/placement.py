"""
Where a Slurm job's worker really runs, so that its report of where it
listens (``POST /jobs/{guid}/listening``, with the job's token) is believed
only when Slurm agrees: the step it names must be of the running Slurm job
named by the job's guid, and the address it gives must be the ``NodeAddr``
Slurm has for the step's node (a name there is resolved on the daemon's
host). Anything else is refused, and the daemon never probes, relays to or
pushes config (with the job's token) to that address.

Slurm is asked with ``squeue --jobs=JOBID --format=%j|%N|%T`` (the job's
name, node and state) and ``scontrol --oneliner show node NODE`` (its
``NodeAddr``).
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

__all__ = ["CommandRunner", "Place", "Ran", "Resolver", "check_place", "resolver"]


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


@attrs.frozen
class Place:
    """Where Slurm runs a step: its Slurm ``job``, its ``node`` and that node's address."""

    job: str
    node: str
    addr: str


def _node_addr(text: str) -> str:
    for field in text.split():
        key, _, value = field.partition("=")
        if key == "NodeAddr":
            return value
    return ""


async def check_place(run: CommandRunner, squeue: str, scontrol: str, resolve: Resolver,
                      guid: str, host: str, step: str | None) -> Place:
    """
    Where job ``guid``'s worker, saying it listens on ``host`` in Slurm
    step ``step``, runs: the step's node and that node's ``NodeAddr``, as
    Slurm says (a name there is resolved here). Raise
    :class:`PlacementRefused` if the step is not that job's, not running,
    or ``host`` is not its node's address, and :class:`PlacementUnchecked`
    if Slurm can't be asked.
    """
    if step is None:
        raise PlacementRefused(f"job {guid} did not say which Slurm step it runs in")
    slurm_job = step.split(".")[0]
    ran = await run([squeue, "--noheader", f"--jobs={slurm_job}", "--format=%j|%N|%T"])
    if ran.code != 0:
        why = ran.err.strip()[:300] or f"exit {ran.code}"
        raise PlacementUnchecked(f"could not ask Slurm where job {guid} runs: {why}")
    lines = [line for line in ran.out.splitlines() if line.strip()]
    fields = (lines[0] if len(lines) == 1 else "").strip().split("|")
    name, node, state = [*fields, "", ""][:3]
    if name != guid:
        raise PlacementRefused(f"Slurm job {slurm_job} is not job {guid}'s")
    if state != "RUNNING":
        raise PlacementRefused(f"Slurm job {slurm_job} is {state or 'gone'}, not running")
    if not node or any(mark in node for mark in "[],"):
        raise PlacementRefused(f"Slurm job {slurm_job} runs on no one node ({node or 'none'})")
    ran = await run([scontrol, "--oneliner", "show", "node", node])
    addr = _node_addr(ran.out) if ran.code == 0 else ""
    if not addr:
        why = ran.err.strip()[:300] or f"exit {ran.code}, no NodeAddr"
        raise PlacementUnchecked(f"could not ask Slurm where node {node} is: {why}")
    try:
        addresses = frozenset({str(ipaddress.ip_address(addr))})
    except ValueError:
        addresses = await resolve(addr)
    if host not in addresses:
        known = ", ".join(sorted(addresses)) or "nothing here"
        raise PlacementRefused(f"job {guid} says it listens on {host}, but Slurm runs it on"
                               f" {node} ({known})")
    return Place(slurm_job, node, host)
