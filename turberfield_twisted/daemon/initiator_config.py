"""
The Initiator's config in force and what its jobs are told of it: the
settings (checked when first used), a reload's new config, where the
control API listens (workers call back there, over TLS if it is on), and
the config text a job's worker reads. :class:`~.initiator.Initiator` is an
:class:`InitiatorConfig`.
"""

from __future__ import annotations

import base64
from configparser import ConfigParser
from typing import TYPE_CHECKING

from turberfield_twisted.config.settings import Settings, check_config
from turberfield_twisted.errors import ConfigError

if TYPE_CHECKING:  # what Initiator provides
    from turberfield_twisted.daemon.job_config import JobConfigs
    from turberfield_twisted.jobs.job import Job
    from turberfield_twisted.jobs.lifecycle import Lifecycle
    from turberfield_twisted.launch.interfaces import ILauncher

__all__ = ["InitiatorConfig"]


class InitiatorConfig:
    """
    The part of :class:`~.initiator.Initiator` that holds its config in
    force (``cfg``, checked as :attr:`settings`) and tells its jobs of it;
    the Initiator makes the job configs, the launcher and the lifecycle it
    uses.
    """

    if TYPE_CHECKING:  # what Initiator provides
        guid: str | None
        cfg: ConfigParser
        _settings: Settings | None
        launcher: ILauncher
        _configs: JobConfigs
        _lifecycle: Lifecycle

        def job(self, guid: str) -> Job: ...

    @property
    def settings(self) -> Settings:
        """The checked config; raise :class:`ConfigError` saying what is missing or wrong."""
        return self._checked()

    def _checked(self) -> Settings:
        if self._settings is None:
            if not self.guid:
                raise ConfigError("the initiator has no guid: pass guid= or options.guid")
            self._settings = check_config(self.cfg, self.guid)
        return self._settings

    def reconfigure(self, cfg: ConfigParser, settings: Settings) -> None:
        """
        Run on ``cfg`` (checked as ``settings``) from now on: a reload. The
        launcher reloads too (warm templates start afresh, importing the
        modules as they are now).
        """
        self.cfg, self._settings = cfg, settings
        self.launcher.reload(list(settings.modules))

    def listening(self, host: str, port: int, ca_pem: bytes | None = None) -> None:
        """
        The control API listens at ``host``:``port``: workers call back
        there; over TLS if ``ca_pem`` is given (the CA they check it with:
        empty for the system's store).
        """
        self._configs.parent = (host, port)
        if ca_pem is not None:
            self._configs.parent_tls = {
                "parent_scheme": "https",
                "parent_ca": base64.b64encode(ca_pem).decode("ascii")}
        self._lifecycle.ports.reserved.add(port)

    @property
    def api_address(self) -> tuple[str, int] | None:
        """Where the control API listens, once it does: what workers call back."""
        return self._configs.parent

    def config_text(self, guid: str) -> str:
        """
        The config job ``guid``'s worker reads (on stdin at its start, and
        when its config changes live): see :meth:`.JobConfigs.text`.
        """
        return self._configs.text(self.job(guid))

    def config_view(self, guid: str) -> dict[str, dict[str, str]]:
        """What ``GET /config/{guid}`` shows of the job's config: see :meth:`.JobConfigs.view`."""
        return self._configs.view(self.job(guid))
