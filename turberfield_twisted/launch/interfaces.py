"""
The launcher seam: what every place a worker can run provides.

An :class:`ILauncher` holds everything that differs between places a
worker can run: whether a module can run there, whether a port is in use
there, the address the worker is reached at, spawning it with its config
on stdin, and what it prepares at start, drops on a reload and closes at
stop. What it spawns is an :class:`IWorkerProcess`
(:class:`ILocalProcess` on this host, :class:`IRemoteProcess` elsewhere),
whose ``exited()`` tells the lifecycle that the process ended. The local
launcher (:mod:`.local`), warm forks (:mod:`.warm`) and Slurm job steps
(:mod:`.slurm`) provide them; :mod:`.router` picks one per module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.launch.protocol import ExitStatus

#: ``on_line(stream, text)``: one line of a worker's output ("stdout" or "stderr").
LineSink = Callable[[str, str], None]

__all__ = ["ILauncher", "ILocalProcess", "IRemoteProcess", "IWatchdog", "IWorkerProcess",
           "LineSink", "ListenSocket"]


@attrs.frozen
class ListenSocket:
    """
    A listening socket a worker inherits (a service's shared socket): its
    ``name`` (``LISTEN_FDNAMES``) and the daemon's ``fd`` of it, which the
    daemon keeps open for as long as the worker may be started with it.
    """

    name: str
    fd: int


class IWorkerProcess(Interface):
    """One running worker, as its launcher started it."""

    pid = Attribute("The worker's pid (None once it is gone, or if it has none here).")

    def exited() -> Deferred[ExitStatus]:
        """Fire with how the worker ended, once it is reaped and its output read."""

    def listening() -> Deferred[str | None]:
        """
        Fire once the worker says it listens (the runtime writes a line on
        :data:`~turberfield_twisted.contract.READY_FD`, or reports it if it
        runs elsewhere: see :class:`IRemoteProcess`), with the host it is
        reached at if it said so, else None; never, if it does not say so.
        Cancel to stop waiting.
        """

    def signal(sig: int) -> None:
        """
        Send ``sig`` to the worker and whatever it started (its process
        group), even once the worker itself has been reaped.
        """


class ILocalProcess(IWorkerProcess):
    """
    A worker running on this host: its ``pid`` is a local process that
    leads the worker's process group, so that the daemon may set its
    resource limits and read its memory and CPU time from ``/proc``.
    """


class IWatchdog(Interface):
    """
    A worker whose ready fd the daemon reads: it counts the watchdog pings
    (``WATCHDOG=1`` lines, as ``sd_notify`` sends them) the worker wrote
    there after it said it was ready.
    """

    pings = Attribute("How many WATCHDOG=1 lines the worker has written on its ready fd.")


class IRemoteProcess(IWorkerProcess):
    """
    A worker running where the daemon can't hand it a ready fd (a cluster
    node): it says where it listens over HTTP (``POST
    /jobs/{guid}/listening``), and its launcher's :meth:`ILauncher.address`
    is None.
    """

    node = Attribute("The cluster node it runs on, once its launcher knows (else None).")

    def located(host: str, port: int, step: str | None) -> Deferred[None]:
        """
        The worker said it listens on ``host``:``port`` (``step``: its
        Slurm job step, ``JOBID.STEP``, if it runs in one). Once its
        launcher agrees that it runs there, fire
        :meth:`~IWorkerProcess.listening` with ``host``, then the Deferred
        returned; if it does not, fail that with
        :class:`~turberfield_twisted.errors.PlacementRefused` (or
        :class:`~turberfield_twisted.errors.PlacementUnchecked` if it can't
        tell) and leave the worker unreached. Later reports change nothing.
        """


class ILauncher(Interface):
    """Starts, reaches and signals worker processes for an Initiator."""

    def check(module: str) -> None:
        """Raise :class:`UnknownModule` if ``module`` can't be run here."""

    def port_in_use(module: str, listen_addr: str, port: int) -> bool:
        """
        Whether something already holds ``port`` where a worker of
        ``module`` would bind it on ``listen_addr`` (False where that can't
        be told from here). Ports are chosen by
        :meth:`~turberfield_twisted.launch.ports.PortBook.choose`, which asks this.
        """

    def address(module: str, listen_addr: str) -> str | None:
        """
        The host to connect to a worker of ``module`` that binds
        ``listen_addr``; None if only the worker can say (it runs
        elsewhere: its :meth:`~IWorkerProcess.listening` fires with it).
        """

    def spawn(
        module: str, guid: str, port: int, config: bytes, on_line: LineSink,
        limits: Limits | None = None, sockets: Sequence[ListenSocket] = (),
    ) -> IWorkerProcess:
        """
        Start ``python -P -m module --guid guid --port port`` in a session
        of its own, ``config`` written to its stdin, each output line given
        to ``on_line``, under ``limits``' rlimits where the launcher sets
        them (each launcher says when, and whether), ``sockets`` handed
        down as systemd's socket activation does (fds 3 on, ``LISTEN_FDS``,
        ``LISTEN_PID``; its lifeline and ready fd after them). Raise
        :class:`SpawnFailed` if it can't (a launcher that can't hand down
        sockets says so).
        """

    def renew(module: str) -> Deferred[None]:
        """
        The next workers of ``module`` must run its code as it is now (a
        rollout): drop what holds the old code (a warm template); fire once
        what replaces it is ready, or is not going to be.
        """

    def prepare(modules: list[str]) -> None:
        """
        The daemon starts, and will launch ``modules`` (those this launcher
        runs): do now what would otherwise hold up a first launch.
        """

    def reload(modules: list[str]) -> None:
        """
        The config was read again and names ``modules`` (those this
        launcher runs): drop what was prepared for the old one.
        """

    def close() -> Deferred[None]:
        """The daemon stops: close what is held open; fire once it is closed."""
