"""
Which Slurm nodes a job's next step must not run on: :class:`NodeBook`.

A job whose node failed under it (``srun`` said ``Node failure on
NODE``) is started again with that node excluded for it (``srun
--exclude``) for as long as the daemon runs it. A node on which jobs
failed ``failures`` times within ``window`` seconds is excluded for
every job for ``cool_down`` seconds from the last of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from turberfield_twisted.config.settings import Settings

__all__ = ["NodeBook", "NodeFailure", "merge_options"]


@attrs.frozen
class NodeFailure:
    """Job ``guid`` lost its step on ``node`` at ``time``: ``reason`` says how."""

    node: str
    guid: str
    time: float
    reason: str


@attrs.define(eq=False)
class NodeBook:
    """
    Node failures and what they exclude, on the clock ``seconds``;
    ``policy()`` gives ``(failures, window, cool_down)`` as the config in force says.
    """

    seconds: Callable[[], float]
    policy: Callable[[], tuple[int, float, float]]
    #: Each job's own excluded nodes, with why.
    by_job: dict[str, dict[str, str]] = attrs.field(factory=dict)
    #: Each node's failures, oldest first (those within the window are kept).
    failures: dict[str, list[NodeFailure]] = attrs.field(factory=dict)
    #: Nodes excluded for every job: until when, and why.
    cooling: dict[str, tuple[float, str]] = attrs.field(factory=dict)
    #: The Slurm jobs of each job that the daemon cancelled after a node failure.
    fences: dict[str, set[str]] = attrs.field(factory=dict)

    @classmethod
    def of(cls, seconds: Callable[[], float], settings: Callable[[], Settings]) -> NodeBook:
        """A book on clock ``seconds`` whose policy is the initiator's settings in force."""

        def policy() -> tuple[int, float, float]:
            own = settings().initiator
            return own.node_failures, own.node_failure_window, own.node_exclude_for

        return cls(seconds, policy)

    def forget(self, guid: str) -> None:
        """Job ``guid`` is forgotten: the nodes excluded for it and its fences go too."""
        self.by_job.pop(guid, None)
        self.fences.pop(guid, None)

    def fence(self, guid: str, slurm_job: str) -> None:
        """Slurm job ``slurm_job`` of job ``guid`` is cancelled: no report from it holds."""
        self.fences.setdefault(guid, set()).add(slurm_job)

    def fenced(self, guid: str, slurm_job: str) -> bool:
        """Whether Slurm job ``slurm_job`` of job ``guid`` was fenced."""
        return slurm_job in self.fences.get(guid, ())

    def failed(self, guid: str, node: str, reason: str) -> bool:
        """
        Job ``guid``'s step failed with ``node`` (``reason``): exclude it for
        that job, and for every job if it has now failed ``failures``
        times within the window. Return whether it is now excluded for all.
        """
        now = self.seconds()
        most, window, cool_down = self.policy()
        self.by_job.setdefault(guid, {})[node] = reason
        kept = [f for f in self.failures.get(node, []) if f.time > now - window]
        kept.append(NodeFailure(node, guid, now, reason))
        self.failures[node] = kept
        if len(kept) >= most:
            self.cooling[node] = (now + cool_down, f"{len(kept)} jobs failed on it within"
                                                   f" {window:g}s; last: {reason}")
            return True
        return False

    def _cool(self) -> dict[str, tuple[float, str]]:
        now = self.seconds()
        for node in [node for node, (until, _) in self.cooling.items() if until <= now]:
            del self.cooling[node]
        return self.cooling

    def excluded(self, guid: str) -> list[str]:
        """The nodes job ``guid``'s next step must not run on, sorted."""
        return sorted({*self.by_job.get(guid, {}), *self._cool()})

    def view(self) -> list[dict[str, Any]]:
        """
        ``GET /slurm/nodes``: each node that failed a job within the window
        or is excluded, by name: its failures, whether it is excluded for
        every job (``until``, ``reason``) and the jobs it is excluded for.
        """
        now = self.seconds()
        _, window, _ = self.policy()
        cooling = self._cool()
        names = {*cooling, *(n for n, fs in self.failures.items()
                             if any(f.time > now - window for f in fs))}
        names |= {node for nodes in self.by_job.values() for node in nodes}
        views = []
        for name in sorted(names):
            recent = [f for f in self.failures.get(name, []) if f.time > now - window]
            until, why = cooling.get(name, (None, None))
            views.append({
                "name": name,
                "excluded": until is not None,
                "until": until,
                "reason": why,
                "failures": [{"guid": f.guid, "time": f.time, "reason": f.reason}
                             for f in recent],
                "excluded_for": sorted(guid for guid, nodes in self.by_job.items()
                                       if name in nodes),
            })
        return views


def merge_options(args: tuple[str, ...], excluded: list[str]) -> tuple[str, ...]:
    """
    ``srun`` options ``args`` with the nodes ``excluded`` added to the
    ``--exclude=`` of ``args`` (one option: ``srun`` takes the last of several).
    """
    nodes = [n for a in args if a.startswith("--exclude=") for n in a[10:].split(",") if n]
    nodes += [n for n in excluded if n not in nodes]
    kept = tuple(a for a in args if not a.startswith("--exclude="))
    return (*kept, *((f"--exclude={','.join(nodes)}",) if nodes else ()))
