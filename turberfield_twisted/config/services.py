"""
Services in the config: ``[service:NAME]`` sections, checked as
:class:`DeclaredService` records, and the checks a service made through
the API shares with them (its name, its ``listen`` address, its numbers).

::

    [service:web]
    module = turberfield_twisted.demo.hello
    instances = 4
    listen = 127.0.0.1:8000   ; or 8000 (loopback), or [::1]:8000
    surge = 1                 ; new instances started at once in a rollout
    max_unavailable = 0       ; how far below `instances` ready a rollout may go
    greeting = hi             ; an override, as a declared job's
    max_memory = 200M         ; a limit of each instance

    [service:grid]            ; its module says launcher = slurm
    module = my.worker
    instances = 3             ; no listen: reached through the service relay only
    spread = nodes            ; one a node where it can (the default), or none

No reactor and nothing of the services layer here: the daemon checks its
config before it starts one.
"""

from __future__ import annotations

import configparser
import ipaddress
from collections.abc import Mapping

import attrs

from turberfield_twisted.config.job_section import check_overrides
from turberfield_twisted.config.names import RESERVED_KEYS, SERVICE_NAME, SESSION
from turberfield_twisted.config.operations import OPERATIONS_KEYS, read_operations
from turberfield_twisted.config.policy import LIMIT_KEYS, Limits
from turberfield_twisted.config.readers import BadValue, Reader, Section, frozen_map, whole
from turberfield_twisted.errors import BadOverride, OverrideNotAllowed

__all__ = [
    "SERVICE_PREFIX",
    "SPREADS",
    "DeclaredService",
    "check_declared_service",
    "check_declared_services",
    "listen_address",
    "numbers_problem",
]

#: The prefix of a declared service's section: ``[service:NAME]``.
SERVICE_PREFIX = "service:"


def listen_address(text: str) -> tuple[str, int]:
    """
    ``(host, port)`` of a ``listen`` address: ``PORT`` (on 127.0.0.1),
    ``HOST:PORT`` or ``[IPV6]:PORT``, the host an IP address; raise
    :class:`BadValue` saying what it must be (never quoting it).
    """
    text = text.strip()
    host, port = "127.0.0.1", text
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise BadValue("must be PORT, HOST:PORT or [IPV6]:PORT")
        host, port = inside, rest[1:]
    elif ":" in text:
        host, _, port = text.rpartition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise BadValue("must be PORT, HOST:PORT or [IPV6]:PORT, its host an IP address"
                       ) from None
    if (ip.version == 6) != text.startswith("["):
        raise BadValue("must have its IPv6 address (only) in brackets")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise BadValue("must end with a port from 1 to 65535")
    return str(ip), int(port)


def numbers_problem(instances: int, surge: int, max_unavailable: int,
                    max_instances: int) -> tuple[str, str] | None:
    """
    ``(key, reason)`` if these numbers make no service: instances from 1 to
    ``max_instances``, surge and max_unavailable of 0 or more and not both 0
    (a rollout could not move). A max_unavailable of instances or more lets
    a rollout drain every old instance at once.
    """
    if instances < 1:
        return "instances", "must be a whole number of 1 or more"
    if instances > max_instances:
        return "instances", f"may be at most {max_instances} (the daemon's max_instances)"
    if surge < 0:
        return "surge", "must be a whole number of 0 or more"
    if max_unavailable < 0:
        return "max_unavailable", "must be a whole number of 0 or more"
    if surge == 0 and max_unavailable == 0:
        return "surge", "and max_unavailable can't both be 0: a rollout could not start"
    return None


@attrs.frozen
class DeclaredService:
    """
    A ``[service:NAME]`` section: ``instances`` workers of ``module``
    sharing a socket bound at ``host``:``port`` (both None for a module
    Slurm runs: its instances spread as ``spread`` says; see
    :class:`~turberfield_twisted.services.model.ServiceSpec`); ``overrides``
    are its other keys, ``limits`` each instance's. ``source`` and ``line``
    say where its header is (they are not compared).
    """

    name: str
    module: str
    host: str | None
    port: int | None
    instances: int = 1
    surge: int = 1
    max_unavailable: int = 0
    session: str | None = None
    overrides: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_map)
    limits: Limits = attrs.field(factory=Limits)
    source: str = attrs.field(default="<config>", eq=False)
    line: int | None = attrs.field(default=None, eq=False)
    #: Its own operations keys (liveness, recycling: :mod:`.operations`), as text.
    operations: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_map)
    spread: str = "nodes"


_NUMBERS: Mapping[str, Reader] = {
    "instances": whole(1),
    "surge": whole(0),
    "max_unavailable": whole(0),
}


#: The keys of a ``[service:NAME]`` section that are not overrides.
_SERVICE_KEYS = frozenset({"module", "session", "listen", "spread", *_NUMBERS, *LIMIT_KEYS,
                           *OPERATIONS_KEYS})

#: What ``spread`` may be: ``nodes`` (a Slurm service's instances on different
#: nodes where it can) or ``none`` (where Slurm places them).
SPREADS = ("nodes", "none")


def check_declared_service(cfg: configparser.ConfigParser, header: str, guid: str,
                           modules: Mapping[str, str], limits: Mapping[str, Reader],
                           max_instances: int) -> DeclaredService:
    """
    A ``[service:NAME]`` section, checked: ``modules`` maps each module
    that has a section to its launcher's name (a service's instances run
    on this host), ``limits`` reads the limit keys; ``max_instances`` is
    the initiator's. Raise :class:`ConfigError` naming the file, line and key.
    """
    section = Section.of(cfg, header, inherit=False)
    name = header[len(SERVICE_PREFIX):]
    if not SERVICE_NAME.accepts(name):
        raise section.error(None, "names a service whose name is not 1 to 48 letters, digits,"
                                  " '_' or '-' (starting with a letter or digit)")
    if name == guid or cfg.has_section(name):
        raise section.error(None, f"names a service whose name is the name of section [{name}]")
    if not section.has("module"):
        raise section.error(None, "has no 'module' key")
    module = section.text("module")
    if module not in modules:
        raise section.error("module", "names a module that has no config section")
    host, port, spread = _address(section, modules[module] != "local")
    numbers = {"instances": 1, "surge": 1, "max_unavailable": 0, **section.read(_NUMBERS)}
    problem = numbers_problem(numbers["instances"], numbers["surge"],
                              numbers["max_unavailable"], max_instances)
    if problem is not None:
        raise section.error(*problem)
    session = section.text("session") if section.has("session") else None
    if session is not None and not SESSION.accepts(session):
        raise section.error("session", "must be at most 256 characters, without control"
                                       " characters or '$'")
    overrides = {}
    for key in sorted(section.own - _SERVICE_KEYS):
        try:
            overrides.update(check_overrides(cfg, module, {key: section.text(key)}))
        except OverrideNotAllowed:
            reason = ("is one the initiator sets" if key in RESERVED_KEYS else
                      "is not one its module lists as overridable (nor module, session,"
                      " listen, spread, instances, surge, max_unavailable or a limit)")
            raise section.error(key, reason) from None
        except BadOverride:
            raise section.error(key, "must be a short key name with a one-line value of at"
                                     " most 4096 characters") from None
    read_operations(section)  # checked: raises naming the key (its module's are too)
    operations = {key: section.text(key) for key in sorted(OPERATIONS_KEYS) if section.has(key)}
    return DeclaredService(name=name, module=module, host=host, port=port, session=session,
                           overrides=overrides, limits=Limits(**section.read(limits)),
                           operations=operations,
                           source=section.origin()[0], line=section.origin()[1],
                           spread=spread, **numbers)


def _address(section: Section, remote: bool) -> tuple[str | None, int | None, str]:
    """
    ``(host, port, spread)`` of a service section: a service of a module
    Slurm runs (``remote``) has no ``listen`` (a socket can't span hosts)
    and may say ``spread``; one of a local module must say ``listen``.
    """
    spread = section.text("spread") if section.has("spread") else "nodes"
    if remote:
        if section.has("listen"):
            raise section.error("listen", "can't be given: its module's workers run on"
                                          " Slurm nodes, and a socket can't span hosts"
                                          " (its instances are reached through the relay)")
        if spread not in SPREADS:
            raise section.error("spread", f"must be one of: {', '.join(SPREADS)}")
        return None, None, spread
    if section.has("spread"):
        raise section.error("spread", "applies only to a service whose module Slurm runs"
                                      " (launcher = slurm)")
    if not section.has("listen"):
        raise section.error(None, "has no 'listen' key (PORT, HOST:PORT or [IPV6]:PORT)")
    try:
        host, port = listen_address(section.text("listen"))
    except BadValue as exc:
        raise section.error("listen", str(exc)) from None
    return host, port, spread


def check_declared_services(cfg: configparser.ConfigParser, guid: str,
                            modules: Mapping[str, str], limits: Mapping[str, Reader],
                            max_instances: int) -> dict[str, DeclaredService]:
    """Every ``[service:NAME]`` section of ``cfg``, by name (see :func:`check_declared_service`)."""
    found = (check_declared_service(cfg, name, guid, modules, limits, max_instances)
             for name in cfg.sections() if name.startswith(SERVICE_PREFIX))
    return {service.name: service for service in found}
