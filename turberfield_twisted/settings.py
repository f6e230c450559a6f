"""
Settings: the whole config checked once at start, as typed records.

:func:`check_config` reads the initiator's own section and every module
section. A bad value raises :class:`~turberfield_twisted.config.ConfigError`
naming its file, line, section and key, and never the value, which may be a
secret. No reactor here: the daemon imports this before it starts one.
"""

from __future__ import annotations

import configparser
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

from .config import RESERVED_KEYS, Config, ConfigError, own_keys
from .supervision import Restart, RestartPolicy

__all__ = ["InitiatorSettings", "ModuleSettings", "Settings", "check_config"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Where web-hook subscribers may be when the config says nothing.
_LOOPBACK: tuple[_Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
#: The prefix of a declared job's section, which is not a module section.
_JOB_PREFIX = "job:"


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
    child_port_min: int = 28000
    child_port_max: int = 28255
    ready_timeout: float = 10.0
    stop_timeout: float = 5.0
    max_exited: int = 1000
    max_body: int = 1048576
    relay_timeout: float = 30.0
    hook_allow: tuple[_Network, ...] = _LOOPBACK
    pythonpath: str = ""
    max_starting: int = attrs.field(factory=_cpu_count)


@attrs.frozen
class ModuleSettings:
    """
    What the initiator reads from a module's section: its restart policy,
    the address its workers listen on and the keys a launch may override.
    The section's other keys are the worker's own.
    """

    name: str
    policy: RestartPolicy = attrs.field(factory=RestartPolicy)
    listen_addr: str = "127.0.0.1"
    overridable: frozenset[str] = frozenset()
    #: Fork its workers from a preloaded template (:mod:`turberfield_twisted.warm`).
    warm: bool = False


def _read_only(modules: Mapping[str, ModuleSettings]) -> Mapping[str, ModuleSettings]:
    return MappingProxyType(dict(modules))


@attrs.frozen
class Settings:
    """The checked config: the initiator's settings and each module's, by name."""

    initiator: InitiatorSettings
    modules: Mapping[str, ModuleSettings] = attrs.field(
        factory=dict, converter=_read_only
    )

    def module(self, name: str) -> ModuleSettings | None:
        """The settings of module ``name``, or None if it has no section."""
        return self.modules.get(name)


class _Invalid(ValueError):
    """A value does not suit its key. The message never quotes the value."""


# Readers turn a value's text into what its key holds or raise _Invalid.
_Reader = Callable[[str], Any]
_T = TypeVar("_T")


def _parse(convert: Callable[[str], _T], text: str) -> _T | None:
    """``convert(text)``, or None: its ValueError (which may quote the text) is dropped."""
    try:
        return convert(text)
    except ValueError:
        return None


def _number(reason: str, low: float, high: float = math.inf, *, above: bool = False) -> _Reader:
    """A reader of a finite number from ``low`` (or above it) to ``high``."""

    def read(text: str) -> float:
        value = _parse(float, text)
        if value is None or not (math.isfinite(value) and low <= value <= high) or (
            above and value == low
        ):
            raise _Invalid(reason)
        return value

    return read


def _whole(low: int, high: int | None = None) -> _Reader:
    """A reader of a whole number from ``low`` to ``high`` (or without end)."""
    reason = (f"must be a whole number of {low} or more" if high is None
              else f"must be a whole number from {low} to {high}")

    def read(text: str) -> int:
        value = _parse(int, text)
        if value is None or value < low or (high is not None and value > high):
            raise _Invalid(reason)
        return value

    return read


def _address(text: str) -> str:
    if text != "localhost" and _parse(ipaddress.ip_address, text) is None:
        raise _Invalid("must be an IP address or localhost")
    return text


def _network(text: str) -> _Network:
    return ipaddress.ip_network(text, strict=False)


def _networks(text: str) -> tuple[_Network, ...]:
    """A comma or space separated list of networks, at least one."""
    networks = [_parse(_network, item) for item in re.split(r"[,\s]+", text) if item]
    if not networks or None in networks:
        raise _Invalid("is not a list of IP networks")
    return tuple(network for network in networks if network is not None)


def _boolean(text: str) -> bool:
    """configparser's booleans: true/false, yes/no, on/off, 1/0 (any case)."""
    found = configparser.ConfigParser.BOOLEAN_STATES.get(text.strip().lower())
    if found is None:
        raise _Invalid("must be true or false")
    return found


def _restart(text: str) -> Restart:
    allowed = [member.value for member in Restart]
    if text not in allowed:
        raise _Invalid(f"must be one of {', '.join(allowed)}")
    return Restart(text)


def _overridable(text: str) -> frozenset[str]:
    """Comma or space separated key names, none of them reserved."""
    names = frozenset(name for name in re.split(r"[,\s]+", text) if name)
    reserved = sorted(names & RESERVED_KEYS)
    if reserved:
        raise _Invalid(f"lists {', '.join(map(repr, reserved))}, which the initiator sets")
    return names


_SECONDS = _number("must be a number of seconds above 0", 0, above=True)
_DELAY = _number("must be a number of seconds of 0 or more", 0)
_PORT = _whole(1, 65535)

_INITIATOR_READERS: Mapping[str, _Reader] = {
    "listen_addr": _address,
    "listen_port": _whole(0, 65535),
    "child_port_min": _PORT,
    "child_port_max": _PORT,
    "ready_timeout": _SECONDS,
    "stop_timeout": _SECONDS,
    "max_exited": _whole(0),
    "max_body": _whole(1),
    "relay_timeout": _SECONDS,
    "hook_allow": _networks,
    "pythonpath": str,
    "max_starting": _whole(1),
}
#: Keys the initiator's section may hold that are not kept in its settings.
_INITIATOR_SECRETS = frozenset({"admin_token"})

_POLICY_READERS: Mapping[str, _Reader] = {
    "restart": _restart,
    "backoff_initial": _DELAY,
    "backoff_factor": _number("must be a number of 0 or more", 0),
    "backoff_cap": _DELAY,
    "jitter": _number("must be a number from 0 to 1", 0, 1),
    "max_restarts": _whole(0),
    "restart_window": _DELAY,
    "reset_after": _DELAY,
}
_MODULE_READERS: Mapping[str, _Reader] = {
    "listen_addr": _address,
    "overridable": _overridable,
    "warm": _boolean,
}


@attrs.frozen
class _Section:
    """One section of ``cfg`` being checked; ``inherit`` reads DEFAULT's keys too."""

    cfg: configparser.ConfigParser
    name: str
    inherit: bool
    own: frozenset[str]

    @classmethod
    def of(cls, cfg: configparser.ConfigParser, name: str, inherit: bool) -> _Section:
        return cls(cfg, name, inherit, frozenset(own_keys(cfg, name)))

    def inherited(self, key: str) -> bool:
        return key not in self.own and key in self.cfg.defaults()

    def has(self, key: str) -> bool:
        return key in self.own or (self.inherit and self.inherited(key))

    def origin(self, key: str) -> tuple[str, int | None]:
        if isinstance(self.cfg, Config):
            return self.cfg.origin(self.name, key)
        return ("<config>", None)

    def where(self, key: str) -> str:
        """Where ``key`` is set, in words, or that it takes its default."""
        if not self.has(key):
            return "its default"
        source, line = self.origin(key)
        return source if line is None else f"{source}, line {line}"

    def error(self, key: str, reason: str) -> ConfigError:
        from_default = " (from [DEFAULT])" if self.inherited(key) else ""
        return ConfigError(f"key {key!r} in [{self.name}]{from_default} {reason}",
                           *self.origin(key))

    def text(self, key: str) -> str:
        try:
            return self.cfg.get(self.name, key)
        except configparser.InterpolationError:
            pass  # raised outside: its message quotes the raw value
        raise self.error(key, "refers to a missing or bad value")

    def read(self, readers: Mapping[str, _Reader]) -> dict[str, Any]:
        """The keys of ``readers`` that this section sets, read and checked."""
        values = {}
        for key, reader in readers.items():
            if not self.has(key):
                continue
            text = self.text(key)
            try:
                values[key] = reader(text)
            except _Invalid as exc:
                raise self.error(key, str(exc)) from None
        return values


def _check_initiator(cfg: configparser.ConfigParser, guid: str) -> InitiatorSettings:
    if not cfg.has_section(guid):
        raise ConfigError(f"there is no [{guid}] section for the initiator")
    section = _Section.of(cfg, guid, inherit=False)
    unknown = sorted(section.own - set(_INITIATOR_READERS) - _INITIATOR_SECRETS)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in [{guid}]", *section.origin(unknown[0]))
    settings = InitiatorSettings(**section.read(_INITIATOR_READERS))
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
    section = _Section.of(cfg, name, inherit=True)
    policy = RestartPolicy(**section.read(_POLICY_READERS))
    return ModuleSettings(name=name, policy=policy, **section.read(_MODULE_READERS))


def check_config(cfg: configparser.ConfigParser, guid: str) -> Settings:
    """
    Check ``cfg`` as read at start and return its settings.

    ``[guid]`` is the initiator's section: only its own keys count (not
    DEFAULT's), and each must be known. Every other section is a module's,
    except ``[job:NAME]`` (declared jobs); there only the restart policy,
    ``listen_addr`` and ``overridable`` are checked, DEFAULT's included.
    Raise :class:`ConfigError` naming the file, line, section and key of
    the first bad value, never the value itself.
    """
    initiator = _check_initiator(cfg, guid)
    modules = {
        name: _check_module(cfg, name)
        for name in cfg.sections()
        if name != guid and not name.startswith(_JOB_PREFIX)
    }
    return Settings(initiator=initiator, modules=modules)
