"""
Warm launch: workers of a module whose section says ``warm = true`` are
forked from a template process that has already imported the runtime,
Klein and the module (:mod:`turberfield_twisted.launch.warm.template`), instead of
starting a new interpreter.

:class:`WarmLauncher` is an
:class:`~turberfield_twisted.launch.interfaces.ILauncher`: it keeps one
:class:`Template` per warm module and hands every other spawn (and a warm
one while its template is not ready, or was refused) to a cold launcher.
A warm worker is what a cold one is: ``--guid``/``--port``, its config on
its own stdin (a pipe the daemon writes, passed to the template with the
other four over the template's socket), its lifeline and ready fd, a
session of its own that the daemon signals, its exit status reported (by
the template, its parent). The template holds no secret of any job.

A template that dies is started again (its workers live on; their ends
are seen through a pidfd each). On a config reload
:meth:`WarmLauncher.reload` retires every template (it forks no more and
exits once its last worker has) and starts new ones, which import the
modules as they are now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from turberfield_twisted.config.policy import Limits
from turberfield_twisted.launch.interfaces import ILauncher, IWorkerProcess, LineSink, ListenSocket
from turberfield_twisted.launch.local import LocalLauncher, SpawnFailed
from turberfield_twisted.launch.reactor import IDaemonReactor
from turberfield_twisted.launch.warm.states import TemplateState
from turberfield_twisted.launch.warm.template_handle import Template

# Template is re-exported: its home is :mod:`.template_handle`.
__all__ = ["RESTART_DELAY", "Template", "WarmLauncher"]

#: Seconds before a template that died once ready is started again.
RESTART_DELAY = 1.0


@implementer(ILauncher)
class WarmLauncher:
    """
    Fork workers of the modules ``is_warm(module)`` names from a template
    each; start everything else with ``cold`` (a :class:`LocalLauncher`),
    and a warm module's workers too while its template is not ready or if
    it was refused.
    """

    log = Logger()

    def __init__(self, reactor: IDaemonReactor, cold: LocalLauncher,
                 is_warm: Callable[[str], bool]):
        self._reactor = reactor
        self.cold = cold
        self._is_warm = is_warm
        #: The current template of each warm module.
        self.templates: dict[str, Template] = {}
        self._retired: set[Template] = set()
        self._restarts: dict[str, IDelayedCall] = {}
        self._closed = False

    # -- ILauncher ---------------------------------------------------------

    def check(self, module: str) -> None:
        """See :meth:`ILauncher.check`."""
        self.cold.check(module)

    def port_in_use(self, module: str, listen_addr: str, port: int) -> bool:
        """See :meth:`ILauncher.port_in_use`."""
        return self.cold.port_in_use(module, listen_addr, port)

    def address(self, module: str, listen_addr: str) -> str:
        """See :meth:`ILauncher.address`."""
        return self.cold.address(module, listen_addr)

    def spawn(self, module: str, guid: str, port: int, config: bytes,
              on_line: LineSink, limits: Limits | None = None,
              sockets: Sequence[ListenSocket] = ()) -> IWorkerProcess:
        """
        See :meth:`ILauncher.spawn`: forked if the module's template is ready
        (the fork sets ``limits``' rlimits on itself before it runs the
        module), else cold.
        """
        template = self.template(module) if self._is_warm(module) else None
        if template is not None and template.state is TemplateState.READY:
            try:
                return template.spawn(guid, port, config, on_line, limits, sockets)
            except OSError as exc:
                self.log.warn("job {guid}: the template of {module} could not fork it ({why});"
                              " it starts cold", guid=guid, module=module, why=str(exc))
        return self.cold.spawn(module, guid, port, config, on_line, limits, sockets)

    def renew(self, module: str) -> Deferred[None]:
        """
        See :meth:`ILauncher.renew`: a warm module's template is retired (its
        workers run on) and a new one imports the module as it is now; fire
        once that one is ready, refused or dead (its workers start cold until
        it is ready).
        """
        if not self._is_warm(module):
            return succeed(None)
        old = self.templates.pop(module, None)
        if old is not None:
            old.retire()
            if old.state is TemplateState.RETIRED:
                self._retired.add(old)
        fresh = self.template(module)
        if fresh is None:
            return succeed(None)
        return fresh.settled().addCallback(lambda _: None)

    # -- templates ---------------------------------------------------------

    def template(self, module: str) -> Template | None:
        """
        ``module``'s template, started now if it has none (None once closed,
        while it waits to start again, or if it could not be started).
        """
        if self._closed:
            return None
        found = self.templates.get(module)
        if found is None or found.state is TemplateState.DEAD:
            if module in self._restarts:
                return None  # it starts again after a delay
            try:
                found = Template(self._reactor, module, self.cold, self._template_ended)
            except SpawnFailed as exc:
                self.log.error("the template of {module} could not be started ({why}); its"
                               " workers start cold", module=module, why=str(exc))
                return None
            self.templates[module] = found
        return found

    def prepare(self, modules: list[str]) -> None:
        """
        Prepare the cold launcher (:meth:`.LocalLauncher.prepare`) and start
        the templates of ``modules`` (the warm ones) now, before any launch.
        """
        self.cold.prepare(modules)
        self._start(modules)

    def reload(self, modules: list[str]) -> None:
        """
        The config was read again: retire every template (it forks no more;
        its workers run on, are still reported, and it exits after the
        last) and start one for each warm module of ``modules``, which
        imports the module afresh. A refused module gets another chance,
        and the cold launcher looks for modules afresh.
        """
        self.cold.reload(modules)
        for old in self.templates.values():
            old.retire()
            if old.state is TemplateState.RETIRED:
                self._retired.add(old)
        self.templates.clear()
        self._start(modules)

    def _start(self, modules: list[str]) -> None:
        for module in modules:
            if self._is_warm(module):
                self.template(module)

    def _template_ended(self, template: Template) -> None:
        self._retired.discard(template)
        if self._closed or self.templates.get(template.module) is not template:
            return
        if template.state is TemplateState.REFUSED:
            return  # cold from now on, until reload
        module = template.module
        del self.templates[module]

        def again() -> None:
            self._restarts.pop(module, None)
            if self._is_warm(module):
                self.template(module)

        self._restarts[module] = self._reactor.callLater(RESTART_DELAY, again)

    def every_template(self) -> list[Template]:
        """Every template it holds: the current ones, and those retired that still run."""
        return [*self.templates.values(), *self._retired]

    def close(self) -> Deferred[None]:
        """Close every template (they exit at once); fire once they have."""
        self._closed = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        return gatherResults([t.close() for t in self.every_template()]).addCallback(
            lambda _: None)

