"""
turberfield-twisted: launch Python modules as HTTP worker processes,
configure them on stdin, and talk to them by RESTful web-hooks.
"""

from typing import Any

from .config import ConfigError, OverrideNotAllowed
from .launcher import ILauncher, LocalLauncher, SpawnFailed, UnknownModule
from .ports import NoFreePort
from .proactor import BadGuid, Initiator, JobExited, NotReady, Proactor, UnknownJob, Worker
from .supervision import RestartPolicy

__version__ = "0.1.0"

__all__ = [
    "BadGuid",
    "ConfigError",
    "ILauncher",
    "Initiator",
    "JobExited",
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


def __getattr__(name: str) -> Any:
    # run_worker lives in a module that installs the asyncio reactor on
    # import, so it is only imported when asked for.
    if name == "run_worker":
        from .worker import run_worker

        return run_worker
    raise AttributeError(name)
