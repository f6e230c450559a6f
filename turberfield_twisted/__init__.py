"""
turberfield-twisted: launch Python modules as HTTP worker processes,
configure them on stdin, and talk to them by RESTful web-hooks.

The public names below are imported on first use, so that a worker process,
which imports this package on its way to
:mod:`turberfield_twisted.worker`, loads none of the daemon's modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    "ConfigError": "errors",
    "EventKind": "jobs.job",
    "Job": "jobs.job",
    "JobEvent": "jobs.job",
    "JobState": "contract",
    "Worker": "jobs.job",
    "ILauncher": "launch.interfaces",
    "IWorkerProcess": "launch.interfaces",
    "LocalLauncher": "launch.local",
    "Initiator": "daemon.initiator",
    "Proactor": "worker.proactor",
    "RestartPolicy": "config.policy",
    "run_worker": "worker.runtime",
    "ServiceConflict": "errors",
    "UnknownService": "errors",
    "RolloutState": "services.model",
    "RolloutView": "services.model",
    "ServiceSpec": "services.model",
    "ServiceGroup": "services.group",
    "Services": "services.registry",
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
    "RolloutState",
    "RolloutView",
    "ServiceConflict",
    "ServiceGroup",
    "ServiceSpec",
    "Services",
    "SpawnFailed",
    "UnknownJob",
    "UnknownModule",
    "UnknownService",
    "Worker",
    "__version__",
    "run_worker",
]

if TYPE_CHECKING:
    from turberfield_twisted.config.policy import RestartPolicy
    from turberfield_twisted.contract import JobState
    from turberfield_twisted.daemon.initiator import Initiator
    from turberfield_twisted.errors import (
        BadGuid,
        BadOverride,
        ChangeRefused,
        ConfigError,
        JobExited,
        NoFreePort,
        NotReady,
        OverrideNotAllowed,
        ServiceConflict,
        SpawnFailed,
        UnknownJob,
        UnknownModule,
        UnknownService,
    )
    from turberfield_twisted.jobs.job import EventKind, Job, JobEvent, Worker
    from turberfield_twisted.launch.interfaces import ILauncher, IWorkerProcess
    from turberfield_twisted.launch.local import LocalLauncher
    from turberfield_twisted.services.group import ServiceGroup
    from turberfield_twisted.services.model import RolloutState, RolloutView, ServiceSpec
    from turberfield_twisted.services.registry import Services
    from turberfield_twisted.worker.proactor import Proactor
    from turberfield_twisted.worker.runtime import run_worker


def lazy_getattr(package: str, where: Mapping[str, str],
                 namespace: dict[str, Any]) -> Callable[[str], Any]:
    """
    A module ``__getattr__`` for ``package`` (this one, or one of its
    subpackages): a name in ``where`` is imported from its module there on
    first use, then kept in ``namespace``.
    """

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(name)
        value = getattr(import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    return getattr_


# run_worker lives in a module that installs the asyncio reactor on
# import; the others pull in Twisted: each is imported when asked for.
__getattr__ = lazy_getattr(__name__, _WHERE, globals())
