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
import resource
from collections.abc import Mapping

import attrs

from turberfield_twisted.config.job_section import check_overrides
from turberfield_twisted.config.logs import LOG_READERS, WATCH_READERS, LogSettings, log_settings
from turberfield_twisted.config.names import GUID, RESERVED_KEYS, SESSION
from turberfield_twisted.config.policy import LIMIT_KEYS, Limits, RestartPolicy
from turberfield_twisted.config.readers import (
    DELAY,
    PORT,
    SECONDS,
    BadValue,
    Network,
    Reader,
    Section,
    address,
    boolean,
    choice,
    frozen_map,
    names,
    networks,
    number,
    overridable,
    restart,
    size,
    srun_args,
    whole,
)
from turberfield_twisted.config.services import (
    SERVICE_PREFIX,
    DeclaredService,
    check_declared_services,
)
from turberfield_twisted.config.typos import did_you_mean, other_names, typo_warnings
from turberfield_twisted.errors import (
    BadOverride,
    ConfigError,
    OverrideNotAllowed,
    UnknownModule,
)

#: ``store_sync`` values: SQLite's ``synchronous`` setting in WAL mode.
SYNC_MODES = ("normal", "full")

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


#: The prefix of a declared job's section: ``[job:NAME]``.
JOB_PREFIX = "job:"


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
    #: Wrong tokens in a row from one address before it is made to wait (429).
    auth_failures: int = 10
    #: The most instances a service may have.
    max_instances: int = 64
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


@attrs.frozen
class DeclaredJob:
    """
    A ``[job:NAME]`` section: a job started with the daemon, whose guid is
    ``name``. ``overrides`` are its other keys (each one its module lists as
    ``overridable``); ``limits`` only those the section sets. ``source``
    and ``line`` say where its header is (they are not compared).
    """

    name: str
    module: str
    session: str | None = None
    overrides: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_map)
    requires: tuple[str, ...] = ()
    limits: Limits = attrs.field(factory=Limits)
    source: str = attrs.field(default="<config>", eq=False)
    line: int | None = attrs.field(default=None, eq=False)


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


def _open_files(text: str) -> int:
    value: int = whole(1)(text)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if os.geteuid() != 0 and hard != resource.RLIM_INFINITY and value > hard:
        raise BadValue(f"must not be above the daemon's own hard limit ({hard})")
    return value


_INITIATOR_READERS: Mapping[str, Reader] = {
    "listen_addr": address,
    "listen_port": whole(0, 65535),
    "listen_backlog": whole(1, 65535),
    "child_port_min": PORT,
    "child_port_max": PORT,
    "ready_timeout": SECONDS,
    "stop_timeout": SECONDS,
    "max_exited": whole(0),
    "max_body": whole(1),
    "relay_timeout": SECONDS,
    "read_timeout": SECONDS,
    "hook_allow": networks,
    "pythonpath": str,
    "max_starting": whole(1),
    "store_sync": choice(*SYNC_MODES),
    "limit_interval": SECONDS,
    "insecure_listen": boolean,
    "tls_client_ca": str,
    "tls_ca": str,
    "hook_ca": str,
    "audit_keep": whole(1, 10_000_000),
    "auth_failures": whole(1, 1_000_000),
    "max_instances": whole(1, 4096),
}


#: Keys the initiator's section may hold that are not kept in its settings.
_INITIATOR_SECRETS = frozenset({"admin_token"})


_POLICY_READERS: Mapping[str, Reader] = {
    "restart": restart,
    "backoff_initial": DELAY,
    "backoff_factor": number("must be a number of 0 or more", 0),
    "backoff_cap": DELAY,
    "jitter": number("must be a number from 0 to 1", 0, 1),
    "max_restarts": whole(0),
    "restart_window": DELAY,
    "reset_after": DELAY,
}


_MODULE_READERS: Mapping[str, Reader] = {
    "listen_addr": address,
    "overridable": overridable,
    "warm": boolean,
    "launcher": choice("local", "slurm"),
    "slurm_args": srun_args,
    **WATCH_READERS,
}


_LIMIT_READERS: Mapping[str, Reader] = {
    "max_memory": size,
    "max_open_files": _open_files,
    "max_cpu_seconds": whole(1),
}


assert tuple(_LIMIT_READERS) == LIMIT_KEYS


#: The keys of a module's section that the daemon reads: the rest are its worker's own.
MODULE_KEYS = frozenset({*_POLICY_READERS, *_MODULE_READERS, *_LIMIT_READERS})


#: The keys of a ``[job:NAME]`` section that are not overrides.
_JOB_KEYS = frozenset({"module", "session", "requires", *LIMIT_KEYS})


def _check_initiator(cfg: configparser.ConfigParser, guid: str) -> InitiatorSettings:
    if not cfg.has_section(guid):
        raise ConfigError(f"there is no [{guid}] section for the initiator")
    section = Section.of(cfg, guid, inherit=False)
    known = {*_INITIATOR_READERS, *LOG_READERS, *_INITIATOR_SECRETS}
    unknown = sorted(section.own - known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in [{guid}]"
                          f"{did_you_mean(unknown[0], known)}", *section.origin(unknown[0]))
    settings = InitiatorSettings(**section.read(_INITIATOR_READERS),
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
    policy = RestartPolicy(**section.read(_POLICY_READERS))
    found = ModuleSettings(name=name, policy=policy,
                           limits=Limits(**section.read(_LIMIT_READERS)),
                           **section.read(_MODULE_READERS))
    if found.launcher == "slurm":
        if found.warm:
            raise section.error("warm", "can't be true for a module whose workers Slurm runs"
                                        " (they are not forked here): set launcher = local")
        _no_limits_on_slurm(section, found.limits)
    elif found.slurm_args:
        raise section.error("slurm_args", "is set, but the module's launcher is not slurm")
    return found


def _no_limits_on_slurm(section: Section, limits: Limits) -> None:
    """A worker on a cluster node is not this host's process: Slurm limits it."""
    for key in LIMIT_KEYS:
        if getattr(limits, key) is not None:
            raise section.error(key, "can't be set on the workers of a module that Slurm runs"
                                     " (on a cluster node): use slurm_args, such as --mem=,"
                                     " --time=")


def _check_declared(cfg: configparser.ConfigParser, header: str, guid: str,
                    modules: Mapping[str, ModuleSettings]) -> DeclaredJob:
    """A ``[job:NAME]`` section, checked as a launch of its module would be."""
    section = Section.of(cfg, header, inherit=False)
    name = header[len(JOB_PREFIX):]
    if not GUID.accepts(name):
        raise section.error(None, "names a job whose guid is not 1 to 64 letters, digits,"
                                  " '_', '.' or '-' (starting with a letter or digit)")
    if name == guid or cfg.has_section(name):
        raise section.error(None, f"names a job whose guid is the name of section [{name}]")
    if not section.has("module"):
        raise section.error(None, "has no 'module' key")
    module = section.text("module")
    if module not in modules:
        raise section.error("module", "names a module that has no config section")
    session = section.text("session") if section.has("session") else None
    if session is not None and not SESSION.accepts(session):
        raise section.error("session", "must be at most 256 characters, without control"
                                       " characters or '$'")
    overrides = {}
    for key in sorted(section.own - _JOB_KEYS):
        try:
            overrides.update(check_overrides(cfg, module, {key: section.text(key)}))
        except OverrideNotAllowed:
            reason = ("is one the initiator sets" if key in RESERVED_KEYS else
                      "is not one its module lists as overridable (nor module, session,"
                      " requires or a limit)"
                      + did_you_mean(key, {*_JOB_KEYS, *modules[module].overridable}))
            raise section.error(key, reason) from None
        except BadOverride:
            raise section.error(key, "must be a short key name with a one-line value of at"
                                     " most 4096 characters") from None
    requires = names(section.text("requires")) if section.has("requires") else ()
    limits = Limits(**section.read(_LIMIT_READERS))
    if modules[module].launcher == "slurm":
        _no_limits_on_slurm(section, limits)
    return DeclaredJob(name=name, module=module, session=session, overrides=overrides,
                       requires=requires, limits=limits,
                       source=section.origin()[0], line=section.origin()[1])


def _check_requires(cfg: configparser.ConfigParser, declared: Mapping[str, DeclaredJob]) -> None:
    """Every job a declared job requires is declared; no job requires itself, however far."""

    def section(name: str) -> Section:
        return Section.of(cfg, JOB_PREFIX + name, inherit=False)

    for name, job in declared.items():
        if any(other not in declared for other in job.requires):
            raise section(name).error("requires", "lists a job that no [job:NAME] section"
                                                  " declares")
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for other in declared[name].requires:
            if other in path:
                cycle = " -> ".join([*path[path.index(other):], other])
                raise section(name).error("requires", f"makes a cycle: {cycle}")
            if other not in done:
                visit(other, [*path, other])
        done.add(name)

    for name in declared:
        if name not in done:
            visit(name, [name])


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
        for job in (_check_declared(cfg, name, guid, modules)
                    for name in cfg.sections() if name.startswith(JOB_PREFIX))
    }
    _check_requires(cfg, declared)
    services = check_declared_services(cfg, guid, {n: m.launcher for n, m in modules.items()},
                                       _LIMIT_READERS, initiator.max_instances)
    warnings = typo_warnings(cfg, {name: found.overridable for name, found in modules.items()},
                             MODULE_KEYS, guid, {*_INITIATOR_READERS, *LOG_READERS})
    return Settings(initiator=initiator, modules=modules, declared=declared, services=services,
                    warnings=warnings)


