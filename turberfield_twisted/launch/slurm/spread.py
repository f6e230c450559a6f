"""
Spreading a service's instances over Slurm's nodes (``spread = nodes``):
:class:`Spread` chooses the node each instance's step runs on.

Each instance is its own Slurm job, and Slurm places separate jobs as its
scheduler likes (``select/cons_tres`` fills the first nodes first unless
the cluster says ``CR_LLN``); no ``srun`` option spreads separate jobs
(``--distribution`` and ``--spread-job`` act within one job). So the
daemon chooses: an instance's step is started with ``--nodelist=NODE``,
NODE the usable node (of the step's partition, up and responding, as
``sinfo`` last said, and not excluded for the job: :class:`.nodes.NodeBook`,
``--exclude`` of the module's ``slurm_args``) on which fewest of its
siblings run or were sent,
ties broken by the oldest sibling (a rollout drains the oldest first),
then by fewest steps of this launcher, then by name. The siblings
started in the same moment are counted by where they were sent, before
any has reported where it runs. With more instances than nodes, nodes
take a second instance each, and so on. A step that fails with its node
is started again the same way, its node excluded: it goes to the least
used node left.

While the first ``sinfo`` (asked as the daemon starts) has not answered,
an instance that spreads waits to start (:meth:`Spread.known_for`, the
daemon's gate on starting, opened again by ``opened``). If ``sinfo``
failed, or the module's ``slurm_args`` name nodes itself (``--nodelist``,
``-w``), no node is chosen and Slurm places the step.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from turberfield_twisted.launch.slurm.placement import CommandRunner, Ran

__all__ = ["DEFAULT", "Siblings", "Spread", "choose_node", "partitions", "usable_nodes"]

#: Given a job's guid: the guids of the other instances of its service if that
#: service spreads its instances over nodes, else None.
Siblings = Callable[[str], Sequence[str] | None]

#: The states (``sinfo %t``, its suffix dropped) of a node a step can be sent to.
_USABLE = frozenset({"idle", "mix", "mixed", "alloc", "allocated", "comp", "completing"})


#: The partition of a step that names none: Slurm's default (``sinfo`` marks it ``*``).
DEFAULT = "*"


def usable_nodes(sinfo_out: str) -> dict[str, frozenset[str]]:
    """
    The nodes that can run a step, by partition (the default one under
    :data:`DEFAULT` too), from ``sinfo --noheader --Node --responding
    --format=%N %t %P``: one whose state is idle, mixed, allocated or
    completing (a ``*``, not responding, or drained or down one is not).
    """
    found: dict[str, set[str]] = {}
    for line in sinfo_out.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[1].endswith("*"):
            continue
        if parts[1].rstrip("~#!%$@^-+") in _USABLE:
            partition = parts[2]
            if partition.endswith("*"):
                found.setdefault(DEFAULT, set()).add(parts[0])
                partition = partition[:-1]
            found.setdefault(partition, set()).add(parts[0])
    return {partition: frozenset(nodes) for partition, nodes in found.items()}


def partitions(args: Sequence[str]) -> list[str]:
    """The partitions ``srun`` options ``args`` name (``--partition``, ``-p``), or the default."""
    named: list[str] = []
    for i, arg in enumerate(args):
        value = None
        if arg.startswith("--partition="):
            value = arg[12:]
        elif arg in ("--partition", "-p") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
        if value is not None:
            named = [p for p in value.split(",") if p]
    return named or [DEFAULT]


def choose_node(usable: Collection[str], excluded: Collection[str],
                siblings_on: Sequence[str], load: dict[str, int]) -> str | None:
    """
    The node for an instance: of ``usable`` less ``excluded``, the one on
    which fewest of ``siblings_on`` (its siblings' nodes, oldest sibling
    first) are; of those even, the one whose oldest sibling is oldest (a
    rollout drains the oldest first: its new instances take the nodes in
    the order they are freed), then the least ``load`` (steps of any job),
    then the first by name; None if no node is left.
    """
    left = sorted(set(usable) - set(excluded))
    if not left:
        return None

    def rank(node: str) -> tuple[int, int, int, str]:
        count = siblings_on.count(node)
        oldest = siblings_on.index(node) if count else 0
        return count, oldest, load.get(node, 0), node

    return min(left, key=rank)


def names_nodes(args: Sequence[str]) -> bool:
    """Whether ``srun`` options ``args`` choose nodes themselves (``--nodelist``, ``-w``)."""
    return any(a == "-w" or a.startswith(("-w", "--nodelist")) for a in args)


@attrs.define(eq=False)
class Spread:
    """
    Which node each step of this launcher was sent to or runs on (by the
    job's guid), the usable nodes as ``sinfo`` last said (None: not yet),
    and ``siblings``, each job's siblings that spread with it.
    """

    log = Logger()

    siblings: Siblings = attrs.field(default=lambda guid: None)
    usable: dict[str, frozenset[str]] | None = None
    #: Each running step's node, by its job's guid: where it was sent, then where it runs.
    where: dict[str, str] = attrs.field(factory=dict)
    #: Called once ``sinfo`` has answered (the jobs waiting for it may start).
    opened: Callable[[], None] = attrs.field(default=lambda: None)
    _asking: bool = False

    def refresh(self, run: CommandRunner, sinfo: str) -> None:
        """Ask ``sinfo`` (run by ``run``) again which nodes are usable (once at a time)."""
        if self._asking:
            return
        self._asking = True
        argv = [sinfo, "--noheader", "--Node", "--responding", "--format=%N %t %P"]
        first = self.usable is None
        asked: Deferred[Ran] = run(argv)
        asked.addCallback(self._answered).addBoth(self._asked, first)

    def _answered(self, ran: Ran) -> None:
        if ran.code != 0:
            self.log.warn("spread: sinfo failed: {why}", why=ran.err.strip()[:300])
            return
        self.usable = usable_nodes(ran.out)

    def _asked(self, result: object, first: bool) -> None:
        self._asking = False
        if first:  # instances may wait for it (never a spawn's own refresh)
            self.opened()

    def known_for(self, guid: str) -> bool:
        """
        Whether job ``guid`` may start: it does not spread, or the usable
        nodes are known, or no ``sinfo`` is being asked (it failed, or none runs).
        """
        return self.usable is not None or not self._asking or self.siblings(guid) is None

    def node_for(self, guid: str, excluded: Collection[str], args: Sequence[str]) -> str | None:
        """
        The node job ``guid``'s next step is sent to (kept as where it is), or
        None: it does not spread, its ``args`` name nodes, no node is known
        or left.
        """
        self.where.pop(guid, None)
        siblings = self.siblings(guid)
        if siblings is None or names_nodes(args):
            return None
        if self.usable is None:
            self.log.info("job {guid}: not spread: Slurm's nodes are not known yet",
                          guid=guid)
            return None
        on = [self.where[g] for g in siblings if g in self.where]
        load: dict[str, int] = {}
        for node in self.where.values():
            load[node] = load.get(node, 0) + 1
        usable = {n for p in partitions(args) for n in self.usable.get(p, ())}
        chosen = choose_node(usable, excluded, on, load)
        if chosen is None:
            self.log.info("job {guid}: not spread: no usable node is left", guid=guid)
            return None
        self.where[guid] = chosen
        self.log.info("job {guid}: spread to Slurm node {node} (its siblings are on"
                      " {on})", guid=guid, node=chosen, on=",".join(sorted(on)) or "none")
        return chosen

    def placed(self, guid: str, node: str | None) -> None:
        """Job ``guid``'s step runs on ``node``, as Slurm says."""
        if node is not None:
            self.where[guid] = node

    def ended(self, guid: str, node: str | None) -> None:
        """Job ``guid``'s step sent to (or run on) ``node`` has ended."""
        if node is not None and self.where.get(guid) == node:
            del self.where[guid]
