"""
Settings: the whole config checked once at start (and at each reload), as
typed records.

:func:`check_config` reads the initiator's own section, every module
section and every declared job (``[job:NAME]``). A bad value raises
:class:`~turberfield_twisted.errors.ConfigError` naming its file, line,
section and key, and never the value, which may be a secret. No reactor
here: the daemon imports this before it starts one.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
from collections.abc import Mapping

import attrs

from turberfield_twisted.config.declared import (
    JOB_PREFIX,
    DeclaredJob,
    check_declared,
    check_requires,
    no_limits_on_slurm,
)
from turberfield_twisted.config.logs import LOG_READERS, LogSettings, log_settings
from turberfield_twisted.config.operations import Operations, read_operations
from turberfield_twisted.config.policy import Limits, RestartPolicy
from turberfield_twisted.config.readers import Network, Section, frozen_map
from turberfield_twisted.config.section_keys import (
    INITIATOR_READERS,
    INITIATOR_SECRETS,
    LIMIT_READERS,
    MODULE_KEYS,
    MODULE_READERS,
    POLICY_READERS,
    SYNC_MODES,
)
from turberfield_twisted.config.services import (
    SERVICE_PREFIX,
    DeclaredService,
    check_declared_services,
)
from turberfield_twisted.config.typos import did_you_mean, other_names, typo_warnings
from turberfield_twisted.errors import ConfigError, UnknownModule

# JOB_PREFIX, MODULE_KEYS, SYNC_MODES and DeclaredJob are re-exported: their homes
# are :mod:`.declared` and :mod:`.section_keys`.
__all__ = [
    "JOB_PREFIX",
    "MODULE_KEYS",
    "SYNC_MODES",
    "DeclaredJob",
    "InitiatorSettings",
    "ModuleSettings",
    "Settings",
    "check_config",
]

#: Where web-hook subscribers may be when the config says nothing.
_LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def _cpu_count() -> int:
    return os.cpu_count() or 1


@attrs.frozen
class InitiatorSettings:
    """
    The keys of the initiator's own section. ``admin_token`` may be set
    there too, but is a secret and not kept here.
    """

    listen_addr: str = "127.0.0.1"
    listen_port: int = 8080
    #: Connections the control API's socket queues before it accepts them.
    listen_backlog: int = 1024
    child_port_min: int = 28000
    child_port_max: int = 28255
    ready_timeout: float = 10.0
    stop_timeout: float = 5.0
    max_exited: int = 1000
    max_body: int = 1048576
    relay_timeout: float = 30.0
    read_timeout: float = 60.0
    hook_allow: tuple[Network, ...] = _LOOPBACK
    pythonpath: str = ""
    max_starting: int = attrs.field(factory=_cpu_count)
    store_sync: str = "normal"
    limit_interval: float = 1.0
    #: Serve plain HTTP off loopback all the same (logged at warn at each start).
    insecure_listen: bool = False
    #: A CA's PEM file: the API (on ssl:) requires a client certificate it signed.
    tls_client_ca: str = ""
    #: A CA's PEM file that signed the API's certificate: handed to workers to check it.
    tls_ca: str = ""
    #: A CA's PEM file that web-hook deliveries to https trust (default: the system's).
    hook_ca: str = ""
    #: Records the audit trail keeps (the oldest dropped, and counted).
    audit_keep: int = 10000
    #: Job events and output lines ``GET /events`` keeps for a client that resumes.
    events_keep: int = 2000
    #: Wrong tokens in a row from one address before it is made to wait (429).
    auth_failures: int = 10
    #: The most instances a service may have.
    max_instances: int = 64
    #: Jobs failed by a Slurm node within ``node_failure_window`` seconds that
    #: exclude it for every job for ``node_exclude_for`` seconds.
    node_failures: int = 3
    node_failure_window: float = 600.0
    node_exclude_for: float = 600.0
    logs: LogSettings = attrs.field(factory=LogSettings)  #: Logs on disk (:mod:`.logs`).


@attrs.frozen
class ModuleSettings:
    """
    What the initiator reads from a module's section: its restart policy,
    the address its workers listen on, the keys a launch may override and
    its workers' limits. The section's other keys are the worker's own.
    """

    name: str
    policy: RestartPolicy = attrs.field(factory=RestartPolicy)
    listen_addr: str = "127.0.0.1"
    overridable: frozenset[str] = frozenset()
    limits: Limits = attrs.field(factory=Limits)
    #: Fork its workers from a preloaded template (:mod:`turberfield_twisted.launch.warm.launcher`).
    warm: bool = False
    #: Where its workers run: ``local`` (this host) or ``slurm`` (job steps of a
    #: Slurm cluster, :mod:`turberfield_twisted.launch.slurm.launcher`).
    launcher: str = "local"
    #: More options for ``srun`` (a ``slurm`` module's only).
    slurm_args: tuple[str, ...] = ()
    watch: bool = False  #: Restart its jobs when its source changes (:mod:`.logs`).
    operations: Operations = attrs.field(factory=Operations)  # liveness, recycling


@attrs.frozen
class Settings:
    """The checked config: the initiator's settings, each module's and each declared job."""

    initiator: InitiatorSettings
    modules: Mapping[str, ModuleSettings] = attrs.field(factory=dict, converter=frozen_map)
    declared: Mapping[str, DeclaredJob] = attrs.field(factory=dict, converter=frozen_map)
    services: Mapping[str, DeclaredService] = attrs.field(factory=dict, converter=frozen_map)
    #: Keys of module sections that look like typos of the daemon's own (file, line, key).
    warnings: tuple[str, ...] = attrs.field(default=(), eq=False)

    def module(self, name: str) -> ModuleSettings | None:
        """The settings of module ``name``, or None if it has no section."""
        return self.modules.get(name)

    def allowed(self, name: str) -> ModuleSettings:
        """The settings of module ``name``; UnknownModule, naming those allowed, if it has none."""
        found = self.modules.get(name)
        if found is None:
            raise UnknownModule(name, "no config section allows it"
                                + (other_names(name, self.modules, "allowed") or " (none is)"))
        return found

    def limits_for(self, module: str, declared: str | None = None,
                   service: str | None = None) -> Limits:
        """
        The limits of a job of ``module`` (declared as ``declared``, or an
        instance of declared service ``service``: their own win).
        """
        found = self.modules.get(module)
        base = found.limits if found is not None else Limits()
        job = self.declared.get(declared) if declared is not None else None
        own = job.limits if job is not None else None
        if own is None and service is not None and service in self.services:
            own = self.services[service].limits
        return own.over(base) if own is not None else base


def _check_initiator(cfg: configparser.ConfigParser, guid: str) -> InitiatorSettings:
    if not cfg.has_section(guid):
        raise ConfigError(f"there is no [{guid}] section for the initiator")
    section = Section.of(cfg, guid, inherit=False)
    known = {*INITIATOR_READERS, *LOG_READERS, *INITIATOR_SECRETS}
    unknown = sorted(section.own - known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in [{guid}]"
                          f"{did_you_mean(unknown[0], known)}", *section.origin(unknown[0]))
    settings = InitiatorSettings(**section.read(INITIATOR_READERS),
                                 logs=log_settings(section.read(LOG_READERS)))
    if settings.child_port_min > settings.child_port_max:
        blamed, other = "child_port_min", "child_port_max"
        if not section.has(blamed):
            blamed, other = other, blamed
        raise ConfigError(
            f"[{guid}] child_port_min is above child_port_max ({other}: {section.where(other)})",
            *section.origin(blamed),
        )
    return settings


def _check_module(cfg: configparser.ConfigParser, name: str) -> ModuleSettings:
    section = Section.of(cfg, name, inherit=True)
    policy = RestartPolicy(**section.read(POLICY_READERS))
    found = ModuleSettings(name=name, policy=policy,
                           limits=Limits(**section.read(LIMIT_READERS)),
                           operations=read_operations(section),
                           **section.read(MODULE_READERS))
    if found.launcher == "slurm":
        if found.warm:
            raise section.error("warm", "can't be true for a module whose workers Slurm runs"
                                        " (they are not forked here): set launcher = local")
        no_limits_on_slurm(section, found.limits)
    elif found.slurm_args:
        raise section.error("slurm_args", "is set, but the module's launcher is not slurm")
    return found


def check_config(cfg: configparser.ConfigParser, guid: str) -> Settings:
    """
    Check ``cfg`` and return its settings.

    ``[guid]`` is the initiator's section: only its own keys count (not
    DEFAULT's), and each must be known. ``[job:NAME]`` sections declare
    jobs (see :class:`DeclaredJob`), ``[service:NAME]`` sections services
    (:class:`~.services.DeclaredService`); every other section is a module's,
    where the restart policy, ``listen_addr``, ``overridable`` and the
    limits are checked, DEFAULT's included.
    Raise :class:`ConfigError` naming the file, line, section and key of
    the first bad value, never the value itself.
    """
    initiator = _check_initiator(cfg, guid)
    modules = {
        name: _check_module(cfg, name)
        for name in cfg.sections()
        if name != guid and not name.startswith((JOB_PREFIX, SERVICE_PREFIX))
    }
    declared = {
        job.name: job
        for job in (check_declared(cfg, name, guid, modules)
                    for name in cfg.sections() if name.startswith(JOB_PREFIX))
    }
    check_requires(cfg, declared)
    services = check_declared_services(cfg, guid, {n: m.launcher for n, m in modules.items()},
                                       LIMIT_READERS, initiator.max_instances)
    warnings = typo_warnings(cfg, {name: found.overridable for name, found in modules.items()},
                             MODULE_KEYS, guid, {*INITIATOR_READERS, *LOG_READERS})
    return Settings(initiator=initiator, modules=modules, declared=declared, services=services,
                    warnings=warnings)


