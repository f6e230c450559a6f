"""
Reading config values for :mod:`~turberfield_twisted.config.settings`: each
reader turns a value's text into what its key holds or raises
:class:`BadValue`, whose message never quotes the value (it may be a
secret); :class:`Section` reads a section's keys and says where each is
set (file, line, section, key).
"""

from __future__ import annotations

import configparser
import ipaddress
import math
import re
import shlex
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

from turberfield_twisted.config.names import RESERVED_KEYS
from turberfield_twisted.config.policy import Restart
from turberfield_twisted.configtext import Config, own_keys
from turberfield_twisted.errors import ConfigError

__all__ = [
    "DELAY",
    "PORT",
    "SECONDS",
    "SRUN_OPTIONS",
    "BadValue",
    "Network",
    "Reader",
    "Section",
    "address",
    "boolean",
    "choice",
    "frozen_map",
    "names",
    "networks",
    "number",
    "overridable",
    "restart",
    "size",
    "srun_args",
    "whole",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadValue(ValueError):
    """A value does not suit its key. The message never quotes the value."""


#: Turns a value's text into what its key holds, or raises :class:`BadValue`.
Reader = Callable[[str], Any]


_T = TypeVar("_T")


def _parse(convert: Callable[[str], _T], text: str) -> _T | None:
    """``convert(text)``, or None: its ValueError (which may quote the text) is dropped."""
    try:
        return convert(text)
    except ValueError:
        return None


def number(reason: str, low: float, high: float = math.inf, *, above: bool = False) -> Reader:
    """A reader of a finite number from ``low`` (or above it) to ``high``."""

    def read(text: str) -> float:
        value = _parse(float, text)
        if value is None or not (math.isfinite(value) and low <= value <= high) or (
            above and value == low
        ):
            raise BadValue(reason)
        return value

    return read


def whole(low: int, high: int | None = None) -> Reader:
    """A reader of a whole number from ``low`` to ``high`` (or without end)."""
    reason = (f"must be a whole number of {low} or more" if high is None
              else f"must be a whole number from {low} to {high}")

    def read(text: str) -> int:
        value = _parse(int, text)
        if value is None or value < low or (high is not None and value > high):
            raise BadValue(reason)
        return value

    return read


_SIZE = re.compile(r"\s*(\d{1,19})\s*(?:([KMGT])i?)?B?\s*", re.IGNORECASE)


_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def size(text: str) -> int:
    """A number of bytes above 0: digits, then K, M, G or T (powers of 1024) if wanted."""
    match = _SIZE.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise BadValue("must be a number of bytes above 0, with K, M, G or T if wanted")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").upper()]


def address(text: str) -> str:
    """An IP address, or ``localhost``."""
    if text != "localhost" and _parse(ipaddress.ip_address, text) is None:
        raise BadValue("must be an IP address or localhost")
    return text


def _network(text: str) -> Network:
    return ipaddress.ip_network(text, strict=False)


def networks(text: str) -> tuple[Network, ...]:
    """A comma or space separated list of networks, at least one."""
    found = [_parse(_network, item) for item in re.split(r"[,\s]+", text) if item]
    if not found or None in found:
        raise BadValue("is not a list of IP networks")
    return tuple(network for network in found if network is not None)


def choice(*allowed: str) -> Reader:
    """A reader of one of ``allowed``."""

    def read(text: str) -> str:
        if text not in allowed:
            raise BadValue(f"must be one of {', '.join(allowed)}")
        return text

    return read


def boolean(text: str) -> bool:
    """configparser's booleans: true/false, yes/no, on/off, 1/0 (any case)."""
    found = configparser.ConfigParser.BOOLEAN_STATES.get(text.strip().lower())
    if found is None:
        raise BadValue("must be true or false")
    return found


def restart(text: str) -> Restart:
    """A restart policy's name."""
    return Restart(choice(*(member.value for member in Restart))(text))


def _words(text: str) -> list[str]:
    return [word for word in re.split(r"[,\s]+", text) if word]


def overridable(text: str) -> frozenset[str]:
    """Comma or space separated key names, none of them reserved."""
    found = frozenset(_words(text))
    reserved = sorted(found & RESERVED_KEYS)
    if reserved:
        raise BadValue(f"lists {', '.join(map(repr, reserved))}, which the initiator sets")
    return found


def names(text: str) -> tuple[str, ...]:
    """Comma or space separated names, each once, in order."""
    return tuple(dict.fromkeys(_words(text)))


#: The ``srun`` options a module's ``slurm_args`` may hold: where and how
#: long its workers run, never what they run or how srun talks.
SRUN_OPTIONS = frozenset({
    "--account", "--constraint", "--cpus-per-task", "--exclude", "--gres", "--mem",
    "--mem-per-cpu", "--nodelist", "--partition", "--qos", "--reservation", "--time",
})


_NTH = {1: "1st", 2: "2nd", 3: "3rd"}


def srun_args(text: str) -> tuple[str, ...]:
    """
    Options for ``srun`` (shell words), each ``--name=value`` with ``name``
    one of :data:`SRUN_OPTIONS` and a value on one line.
    """
    try:
        words = shlex.split(text)
    except ValueError:
        raise BadValue("is not a list of shell words (an unclosed quote?)") from None
    allowed = ", ".join(sorted(SRUN_OPTIONS))
    for n, word in enumerate(words, 1):
        name, equals, value = word.partition("=")
        if name not in SRUN_OPTIONS or not equals or not value or not value.isprintable():
            raise BadValue(f"has a {_NTH.get(n, f'{n}th')} word that is not --name=value with"
                           f" a name srun is allowed to be given here ({allowed})")
    return tuple(words)


SECONDS = number("must be a number of seconds above 0", 0, above=True)


DELAY = number("must be a number of seconds of 0 or more", 0)


PORT = whole(1, 65535)


@attrs.frozen
class Section:
    """One section of ``cfg`` being checked; ``inherit`` reads DEFAULT's keys too."""

    cfg: configparser.ConfigParser
    name: str
    inherit: bool
    own: frozenset[str]

    @classmethod
    def of(cls, cfg: configparser.ConfigParser, name: str, inherit: bool) -> Section:
        """The section ``name`` of ``cfg``."""
        return cls(cfg, name, inherit, frozenset(own_keys(cfg, name)))

    def inherited(self, key: str) -> bool:
        """Whether ``key`` comes from DEFAULT."""
        return key not in self.own and key in self.cfg.defaults()

    def has(self, key: str) -> bool:
        """Whether the section sets ``key`` (or inherits it, if it ``inherit``\\ s)."""
        return key in self.own or (self.inherit and self.inherited(key))

    def origin(self, key: str | None = None) -> tuple[str, int | None]:
        """The source and line of ``key`` (of the section's header if None)."""
        if isinstance(self.cfg, Config):
            return self.cfg.origin(self.name, key)
        return ("<config>", None)

    def where(self, key: str) -> str:
        """Where ``key`` is set, in words, or that it takes its default."""
        if not self.has(key):
            return "its default"
        source, line = self.origin(key)
        return source if line is None else f"{source}, line {line}"

    def error(self, key: str | None, reason: str) -> ConfigError:
        """A :class:`ConfigError` at ``key`` (the header if None): the section, key, reason."""
        if key is None:
            return ConfigError(f"[{self.name}] {reason}", *self.origin())
        from_default = " (from [DEFAULT])" if self.inherited(key) else ""
        return ConfigError(f"key {key!r} in [{self.name}]{from_default} {reason}",
                           *self.origin(key))

    def text(self, key: str) -> str:
        """The interpolated text of ``key``."""
        try:
            return self.cfg.get(self.name, key)
        except configparser.InterpolationError:
            pass  # raised outside: its message quotes the raw value
        raise self.error(key, "refers to a missing or bad value")

    def read(self, readers: Mapping[str, Reader]) -> dict[str, Any]:
        """The keys of ``readers`` that this section sets, read and checked."""
        values = {}
        for key, reader in readers.items():
            if not self.has(key):
                continue
            text = self.text(key)
            try:
                values[key] = reader(text)
            except BadValue as exc:
                raise self.error(key, str(exc)) from None
        return values


def frozen_map(items: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of ``items`` (an attrs converter for a record's mapping)."""
    return MappingProxyType(dict(items))
