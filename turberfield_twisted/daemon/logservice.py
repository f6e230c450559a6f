"""
Logs on disk as a part of the daemon: :func:`disk_logs` makes the
:class:`~.joblogs.JobLogs` of an initiator (or none, with ``log_dir =
off``) and the service that owns it: SIGUSR1 reopens the files (for
an outside rotation tool), and the files are closed once the jobs have
stopped (it is stopped after the initiator).
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from turberfield_twisted.config.logs import LogSettings
from turberfield_twisted.daemon.initiator import Initiator

if TYPE_CHECKING:  # imported when logs on disk are on (the writer thread, LogFile)
    from turberfield_twisted.daemon.joblogs import JobLogs

__all__ = ["LOGS_DIR", "LogService", "disk_logs"]

#: The log dir's name in the state dir, where ``log_dir`` does not say.
LOGS_DIR = "logs"


class LogService(Service):
    """Owns ``logs``: SIGUSR1 reopens its files; stopping closes them."""

    log = Logger()

    def __init__(self, reactor: IReactorFromThreads, logs: JobLogs):
        self._reactor = reactor
        self.logs = logs

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        signal.signal(signal.SIGUSR1, self._usr1)  # before the reactor runs

    def _usr1(self, signum: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self._reopen)

    def _reopen(self) -> None:
        self.log.info("SIGUSR1: reopening the job log files")
        self.logs.reopen().addErrback(
            lambda failure: self.log.error("SIGUSR1: the log files were not reopened: {error}",
                                           error=str(failure.value)))

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self.logs.close()


def disk_logs(reactor: IReactorFromThreads, initiator: Initiator, state_dir: Path,
              settings: LogSettings) -> LogService | None:
    """
    The logs on disk of ``initiator``'s jobs, under ``settings.dir`` (or
    ``state_dir``/logs), observing its output, its events and what it
    forgets; None if they are off. SystemExit with one line if the log dir
    can't be made.
    """
    if settings.off:
        return None
    from turberfield_twisted.daemon.joblogs import JobLogs
    from turberfield_twisted.daemon.logfiles import make_root

    try:
        root = make_root(Path(settings.dir) if settings.dir else state_dir / LOGS_DIR)
    except OSError as exc:
        raise SystemExit(f"proactor: log_dir: {exc}") from None
    logs = JobLogs(reactor, root, settings, initiator.workers.get)
    initiator.subscribe_output(logs.line)
    initiator.subscribe(logs.event)
    initiator.forgotten.append(logs.forget)
    return LogService(reactor, logs)
