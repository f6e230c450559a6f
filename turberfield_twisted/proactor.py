"""
The seed API's ``turberfield.ipc.proactor``, by its old names:
:class:`Proactor` (the base of anything that does a job of work, from
:mod:`turberfield_twisted.worker.proactor`), :class:`Initiator` (the daemon,
from :mod:`turberfield_twisted.daemon.initiator`) and :class:`Worker` (a
job's record, from :mod:`turberfield_twisted.jobs.job`).

``Initiator`` and ``Worker`` are imported when first asked for. Nothing in
the package imports this module: it is for callers of the seed API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turberfield_twisted.worker.proactor import Proactor

if TYPE_CHECKING:
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.jobs.job import Worker

__all__ = ["Initiator", "Proactor", "Worker"]


def __getattr__(name: str) -> Any:
    if name == "Initiator":
        from turberfield_twisted.daemon.initiator import Initiator

        return Initiator
    if name == "Worker":
        from turberfield_twisted.jobs.job import Worker

        return Worker
    raise AttributeError(name)
