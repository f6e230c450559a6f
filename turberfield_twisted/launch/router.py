"""
Which launcher runs a module's workers: its section's ``launcher`` key,
``local`` (the default: this host, warm or cold, :mod:`.warm`) or
``slurm`` (job steps of a Slurm cluster, :mod:`.slurm`).

:class:`ModuleLaunchers` is the :class:`~.launcher.ILauncher` an
Initiator uses: it hands each call to the launcher the module's section
names, as the config in force says (so a reload changes it from each
job's next start). The lifecycle never knows which one runs a job.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from zope.interface import implementer

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.config.settings import Settings
from turberfield_twisted.launch.interfaces import ILauncher, IWorkerProcess, LineSink
from turberfield_twisted.launch.warm.launcher import WarmLauncher
from turberfield_twisted.launch.warm.launcher import default_launcher as local_launcher

__all__ = ["ModuleLaunchers", "default_launcher"]

@implementer(ILauncher)
class ModuleLaunchers:
    """
    ``local`` runs every module whose section does not say ``launcher =
    slurm``; ``slurm()`` makes the launcher for those that do (once, on
    first use).
    """

    def __init__(self, settings: Callable[[], Settings], local: WarmLauncher,
                 slurm: Callable[[], ILauncher]):
        self._settings = settings
        self.local = local
        self._make_slurm = slurm
        self._slurm: ILauncher | None = None

    def launcher_of(self, module: str) -> ILauncher:
        """The launcher of ``module``'s workers, as its section says now."""
        found = self._settings().module(module)
        if found is None or found.launcher != "slurm":
            return self.local
        if self._slurm is None:
            self._slurm = self._make_slurm()
        return self._slurm

    def check(self, module: str) -> None:
        """See :meth:`ILauncher.check`."""
        self.launcher_of(module).check(module)

    def choose_port(self, module: str, ports: range, listen_addr: str, prefer: int | None,
                    taken: Container[int]) -> int:
        """See :meth:`ILauncher.choose_port`."""
        return self.launcher_of(module).choose_port(module, ports, listen_addr, prefer, taken)

    def address(self, module: str, listen_addr: str) -> str | None:
        """See :meth:`ILauncher.address`."""
        return self.launcher_of(module).address(module, listen_addr)

    def spawn(self, module: str, guid: str, port: int, config: bytes,
              on_line: LineSink, limits: Limits | None = None) -> IWorkerProcess:
        """See :meth:`ILauncher.spawn`."""
        return self.launcher_of(module).spawn(module, guid, port, config, on_line, limits)

    def prepare(self, modules: list[str]) -> None:
        """
        Prepare the local launcher: its workers' path, and the templates of
        the warm modules among ``modules`` (see :meth:`.WarmLauncher.prepare`).
        """
        self.local.prepare([m for m in modules if self.launcher_of(m) is self.local])

    def reload(self, modules: list[str]) -> None:
        """
        The config was read again: the local launcher's templates start
        afresh for the local modules among ``modules`` (see
        :meth:`.WarmLauncher.reload`).
        """
        self.local.reload([m for m in modules if self.launcher_of(m) is self.local])

    def close(self) -> Deferred[None]:
        """Close what the launchers hold open (the warm templates); fire once they have."""
        closing = [maybeDeferred(getattr(launcher, "close", lambda: None))
                   for launcher in (self.local, self._slurm) if launcher is not None]
        return gatherResults(closing).addCallback(lambda _: None)


def default_launcher(reactor: Any, settings: Callable[[], Settings]) -> ModuleLaunchers:
    """
    An Initiator's launcher: :func:`.warm.default_launcher`'s for local
    modules, a :class:`~.slurm.SlurmLauncher` for ``launcher = slurm`` ones
    (``pythonpath`` from ``settings()`` for both).
    """
    from turberfield_twisted.launch.slurm.launcher import SlurmLauncher

    def slurm_args(module: str) -> tuple[str, ...]:
        found = settings().module(module)
        return found.slurm_args if found is not None else ()

    def slurm() -> ILauncher:
        return SlurmLauncher(reactor, slurm_args, pythonpath=settings().initiator.pythonpath)

    return ModuleLaunchers(settings, local_launcher(reactor, settings), slurm)
