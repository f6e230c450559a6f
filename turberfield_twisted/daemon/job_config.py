"""
Each job's config, composed when it is sent and never written into the
operator's ConfigParser: ``[DEFAULT]`` of the config in force (less its
secrets) and the job's own section (see
:func:`~turberfield_twisted.config.job_section.job_section`): its module
section's keys as its worker was last started with them, its overrides,
and what the initiator sets for it (module, port, session, where the
daemon listens, its token).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from configparser import ConfigParser

from turberfield_twisted.config.job_section import job_section
from turberfield_twisted.config.operations import service_keys
from turberfield_twisted.config.settings import Settings
from turberfield_twisted.configtext import job_config_text, job_config_view, section_items
from turberfield_twisted.jobs.job import Job

__all__ = ["JobConfigs"]


class JobConfigs:
    """
    The configs of an initiator's jobs, from ``cfg()`` and ``settings()``
    (the config in force); ``parent`` is where the control API listens,
    once it does (until then, the initiator's ``listen_addr`` and
    ``listen_port``): what a worker calls back.
    """

    def __init__(self, cfg: Callable[[], ConfigParser], settings: Callable[[], Settings]):
        self._cfg = cfg
        self._settings = settings
        self.parent: tuple[str, int] | None = None
        #: How workers reach it over TLS: ``parent_scheme`` and ``parent_ca`` keys.
        self.parent_tls: dict[str, str] = {}

    def render(self, job: Job) -> bytes:
        """
        ``job`` is about to be spawned: note its module section's keys as
        they are now (a reload changes them from its next start) and give
        the config its worker reads on stdin (a declared service's operations
        keys over its module's).
        """
        job.module_keys = {**section_items(self._cfg(), job.module),
                           **service_keys(self._settings(), job.service)}  # its service's win
        return self.text(job).encode("utf-8")

    def ended(self, job: Job) -> None:
        """``job`` has ended: it has no config until it starts again."""
        job.module_keys = None

    def section(self, job: Job, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """
        ``job``'s own section, values as they are meant (with ``overrides``
        in place of its own, if given); empty while it has no run.
        """
        if job.module_keys is None:
            return {}
        own = self._settings().initiator
        section = job_section(job.module_keys, job.module,
                              job.overrides if overrides is None else overrides,
                              port=job.port, session=job.session, token=job.token,
                              parent=self.parent or (own.listen_addr, own.listen_port))
        section.update(self.parent_tls)
        return section

    def text(self, job: Job, overrides: Mapping[str, str] | None = None) -> str:
        """
        The config ``job``'s worker reads: ``[DEFAULT]`` and its section
        (as :meth:`section` gives it), escaped.
        """
        return job_config_text(self._cfg(), job.guid, self.section(job, overrides))

    def view(self, job: Job) -> dict[str, dict[str, str]]:
        """What ``job`` is shown of its config: ``default`` and ``section``, less secrets."""
        return job_config_view(self._cfg(), self.section(job))
