"""
turberfield-twisted: launch Python modules as HTTP worker processes,
configure them on stdin, and talk to them by RESTful web-hooks.

The public names below are imported on first use, so that a worker process,
which imports this package on its way to
:mod:`turberfield_twisted.worker`, loads none of the daemon's modules.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that holds it.
_WHERE = {
    "BadGuid": "errors",
    "BadOverride": "errors",
    "ChangeRefused": "errors",
    "JobExited": "errors",
    "NoFreePort": "errors",
    "NotReady": "errors",
    "OverrideNotAllowed": "errors",
    "SpawnFailed": "errors",
    "UnknownJob": "errors",
    "UnknownModule": "errors",
    "ConfigError": "config",
    "EventKind": "job",
    "Job": "job",
    "JobEvent": "job",
    "JobState": "job",
    "Worker": "job",
    "ILauncher": "launcher",
    "IWorkerProcess": "launcher",
    "LocalLauncher": "launcher",
    "Initiator": "initiator",
    "Proactor": "proactor",
    "RestartPolicy": "supervision",
    "run_worker": "worker",
}

__all__ = [
    "BadGuid",
    "BadOverride",
    "ChangeRefused",
    "ConfigError",
    "EventKind",
    "ILauncher",
    "IWorkerProcess",
    "Initiator",
    "Job",
    "JobEvent",
    "JobExited",
    "JobState",
    "LocalLauncher",
    "NoFreePort",
    "NotReady",
    "OverrideNotAllowed",
    "Proactor",
    "RestartPolicy",
    "SpawnFailed",
    "UnknownJob",
    "UnknownModule",
    "Worker",
    "__version__",
    "run_worker",
]

if TYPE_CHECKING:
    from .config import ConfigError
    from .errors import (
        BadGuid,
        BadOverride,
        ChangeRefused,
        JobExited,
        NoFreePort,
        NotReady,
        OverrideNotAllowed,
        SpawnFailed,
        UnknownJob,
        UnknownModule,
    )
    from .initiator import Initiator
    from .job import EventKind, Job, JobEvent, JobState, Worker
    from .launcher import ILauncher, IWorkerProcess, LocalLauncher
    from .proactor import Proactor
    from .supervision import RestartPolicy
    from .worker import run_worker


def __getattr__(name: str) -> Any:
    # run_worker lives in a module that installs the asyncio reactor on
    # import; the others pull in Twisted: each is imported when asked for.
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(name)
    value = getattr(import_module(f".{where}", __name__), name)
    globals()[name] = value
    return value
