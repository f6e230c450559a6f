"""
Which launcher runs a module's workers: its section's ``launcher`` key,
``local`` (the default: this host, warm or cold, :mod:`.warm`) or
``slurm`` (job steps of a Slurm cluster, :mod:`.slurm`).

:class:`ModuleLaunchers` is the
:class:`~turberfield_twisted.launch.interfaces.ILauncher` an Initiator
uses: it hands each call to the launcher the module's section names, as
the config in force says (so a reload changes it from each job's next
start). The lifecycle never knows which one runs a job.
:func:`default_launcher` builds the one an Initiator makes for itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, gatherResults
from zope.interface import implementer

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.config.settings import Settings
from turberfield_twisted.launch.interfaces import ILauncher, IWorkerProcess, LineSink, ListenSocket
from turberfield_twisted.launch.local import LocalLauncher
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.launch.warm.launcher import WarmLauncher

if TYPE_CHECKING:
    from turberfield_twisted.launch.slurm.nodes import NodeBook
    from turberfield_twisted.launch.slurm.spread import Spread

__all__ = ["LOCAL", "SLURM", "ModuleLaunchers", "default_launcher"]

#: The ``launcher`` key's values.
LOCAL, SLURM = "local", "slurm"


@implementer(ILauncher)
class ModuleLaunchers:
    """
    Run each module's workers with the launcher its section names, made by
    ``made[name]()`` on first use (``local`` for a module whose section
    does not say ``launcher = slurm``), so that none is built before the
    config is known.
    """

    def __init__(self, settings: Callable[[], Settings],
                 made: Mapping[str, Callable[[], ILauncher]]):
        self._settings = settings
        self._make = dict(made)
        self._made: dict[str, ILauncher] = {}

    def name_of(self, module: str) -> str:
        """The name of the launcher of ``module``'s workers, as its section says now."""
        found = self._settings().module(module)
        return SLURM if found is not None and found.launcher == SLURM else LOCAL

    def launcher_of(self, module: str) -> ILauncher:
        """The launcher of ``module``'s workers (made now if it is the first)."""
        return self._launcher(self.name_of(module))

    def _launcher(self, name: str) -> ILauncher:
        if name not in self._made:
            self._made[name] = self._make[name]()
        return self._made[name]

    def _by_launcher(self, modules: list[str]) -> dict[str, list[str]]:
        mine: dict[str, list[str]] = {LOCAL: []}
        for module in modules:
            mine.setdefault(self.name_of(module), []).append(module)
        return mine

    def check(self, module: str) -> None:
        """See :meth:`ILauncher.check`."""
        self.launcher_of(module).check(module)

    def port_in_use(self, module: str, listen_addr: str, port: int) -> bool:
        """See :meth:`ILauncher.port_in_use`."""
        return self.launcher_of(module).port_in_use(module, listen_addr, port)

    def address(self, module: str, listen_addr: str) -> str | None:
        """See :meth:`ILauncher.address`."""
        return self.launcher_of(module).address(module, listen_addr)

    def spawn(self, module: str, guid: str, port: int, config: bytes,
              on_line: LineSink, limits: Limits | None = None,
              sockets: Sequence[ListenSocket] = ()) -> IWorkerProcess:
        """See :meth:`ILauncher.spawn`."""
        return self.launcher_of(module).spawn(module, guid, port, config, on_line, limits,
                                              sockets)

    def renew(self, module: str) -> Deferred[None]:
        """See :meth:`ILauncher.renew`."""
        return self.launcher_of(module).renew(module)

    def prepare(self, modules: list[str]) -> None:
        """
        See :meth:`ILauncher.prepare`: the local launcher always (the
        workers' path, and the templates of the warm modules among
        ``modules``), every other one that runs some of ``modules``.
        """
        for name, mine in self._by_launcher(modules).items():
            self._launcher(name).prepare(mine)

    def reload(self, modules: list[str]) -> None:
        """See :meth:`ILauncher.reload`: each launcher made so far, with its modules."""
        mine = self._by_launcher(modules)
        for name, launcher in self._made.items():
            launcher.reload(mine.get(name, []))

    def close(self) -> Deferred[None]:
        """See :meth:`ILauncher.close`: each launcher made so far."""
        closing = [launcher.close() for launcher in self._made.values()]
        return gatherResults(closing).addCallback(lambda _: None)


def default_launcher(reactor: IDaemonReactor, settings: Callable[[], Settings],
                     nodes: NodeBook | None = None,
                     spread: Spread | None = None) -> ModuleLaunchers:
    """
    An Initiator's launcher, reading the config in force through
    ``settings()`` (so a reload changes it from each job's next start): a
    :class:`WarmLauncher` over a cold :class:`LocalLauncher` for local
    modules (those whose section says ``warm`` are forked from a
    template), a :class:`~.slurm.launcher.SlurmLauncher` for ``launcher =
    slurm`` ones (keeping node failures in ``nodes``, spreading services'
    instances with ``spread``); both with the
    initiator's ``pythonpath``.
    """
    def is_warm(module: str) -> bool:
        found = settings().module(module)
        return bool(found is not None and found.warm)

    def local() -> ILauncher:
        cold = LocalLauncher(reactor, pythonpath=settings().initiator.pythonpath)
        return WarmLauncher(reactor, cold, is_warm)

    def slurm_args(module: str) -> tuple[str, ...]:
        found = settings().module(module)
        return found.slurm_args if found is not None else ()

    def slurm() -> ILauncher:  # loaded only if a module runs on Slurm
        from turberfield_twisted.launch.slurm.launcher import SlurmLauncher

        return SlurmLauncher(reactor, slurm_args, pythonpath=settings().initiator.pythonpath,
                             nodes=nodes, spread=spread)

    return ModuleLaunchers(settings, {LOCAL: local, SLURM: slurm})
