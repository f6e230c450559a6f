"""
Configuration: the ConfigParser factory, reading a config stream with a
timeout, building a job's section and writing what a job may see.

Values may hold secrets, so no error raised here ever quotes one.
"""

from __future__ import annotations

import asyncio
import configparser
import io
import os
import re
import stat
from collections.abc import Iterable, Mapping
from typing import IO, Any

__all__ = [
    "RESERVED_KEYS",
    "SECRET_KEYS",
    "ConfigError",
    "OverrideNotAllowed",
    "check_overrides",
    "job_config_text",
    "make_config",
    "parse_config",
    "read_stream",
    "redact",
    "section_items",
]

#: Keys whose values are never shown in logs or API output.
SECRET_KEYS = frozenset({"token", "admin_token", "secret"})
#: Keys the initiator writes into a job's section: never set by an override.
RESERVED_KEYS = frozenset({
    "token", "admin_token", "listen_port", "listen_addr", "parent_addr", "parent_port",
    "session", "module", "overridable",
})
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
MAX_VALUE = 4096


class OverrideNotAllowed(ValueError):
    """A per-job override names a key its module section does not allow."""


class ConfigError(ValueError):
    """
    A config could not be read. ``source`` and ``line`` say where; the
    message says why, and never quotes a value.
    """

    def __init__(self, reason: str, source: str = "<config>", line: int | None = None):
        self.reason = reason
        self.source = source
        self.line = line
        where = source if line is None else f"{source}, line {line}"
        super().__init__(f"{where}: {reason}")


def make_config() -> configparser.ConfigParser:
    """A ConfigParser with ExtendedInterpolation and case-kept keys."""
    cfg = configparser.ConfigParser(interpolation=configparser.ExtendedInterpolation())
    cfg.optionxform = str  # type: ignore[assignment,method-assign]
    return cfg


def _reason(exc: configparser.Error) -> tuple[str, int | None]:
    """Describe a parsing error by its kind and line, without the offending text."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return "text before the first [section] header", exc.lineno
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"section [{exc.section}] appears twice", exc.lineno
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"key {exc.option!r} appears twice in [{exc.section}]", exc.lineno
    if isinstance(exc, configparser.ParsingError):
        lines = [lineno for lineno, _ in exc.errors]
        return "a line is neither a [section], a key = value nor a comment", (
            lines[0] if lines else None
        )
    return type(exc).__name__, None


def parse_config(
    text: str,
    source: str = "<config>",
    into: configparser.ConfigParser | None = None,
) -> configparser.ConfigParser:
    """
    Parse ``text`` into ``into`` (a new parser by default) and check that
    every value interpolates. Raise :class:`ConfigError` naming the line.
    """
    cfg = make_config() if into is None else into
    try:
        cfg.read_string(text, source=source)
    except configparser.Error as exc:
        reason, line = _reason(exc)
        raise ConfigError(reason, source, line) from None
    for section in [configparser.DEFAULTSECT, *cfg.sections()]:
        for key in cfg[section]:
            try:
                cfg.get(section, key)
            except configparser.InterpolationError as exc:
                raise ConfigError(
                    f"key {key!r} in [{section}] refers to a missing or bad value"
                    f" ({type(exc).__name__})",
                    source,
                ) from None
    return cfg


def section_items(cfg: configparser.ConfigParser, section: str) -> dict[str, str]:
    """The interpolated keys of ``section`` that are not inherited from DEFAULT."""
    own = cfg._sections.get(section, {})  # type: ignore[attr-defined]
    return {key: cfg.get(section, key) for key in own}


def _escape(value: str) -> str:
    return value.replace("$", "$$")


def job_config_text(
    cfg: configparser.ConfigParser,
    guid: str,
    exclude_default: Iterable[str] = SECRET_KEYS,
) -> str:
    """
    Render what a job may see: ``[DEFAULT]`` (less secret keys) and its own
    ``[guid]`` section, values interpolated and escaped so the job needs no
    other section to read them.
    """
    out = make_config()
    skip = set(exclude_default)
    for key in cfg.defaults():
        if key not in skip:
            out[configparser.DEFAULTSECT][key] = _escape(cfg.get(configparser.DEFAULTSECT, key))
    out.add_section(guid)
    for key, value in section_items(cfg, guid).items():
        out[guid][key] = _escape(value)
    buf = io.StringIO()
    out.write(buf)
    return buf.getvalue()


def check_overrides(
    cfg: configparser.ConfigParser, module: str, overrides: Any
) -> dict[str, str]:
    """
    Validate per-job overrides for ``module``: a mapping of key to a string,
    number or boolean, each key listed in the section's ``overridable``
    (comma or space separated) and none of :data:`RESERVED_KEYS`.

    Return them as strings. Raise :class:`TypeError` for a malformed
    mapping, :class:`OverrideNotAllowed` for a key that may not be set.
    """
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise TypeError("config must be an object of key: value")
    allowed = set(cfg.get(module, "overridable", fallback="").replace(",", " ").split())
    out: dict[str, str] = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise TypeError("config keys must be short names of letters, digits, _ . -")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise TypeError(f"config value of {key!r} must be a string, number or boolean")
        text = str(value)
        if len(text) > MAX_VALUE or "\n" in text or "\r" in text:
            raise TypeError(f"config value of {key!r} must be one line of at most {MAX_VALUE}")
        if key in RESERVED_KEYS or key not in allowed:
            raise OverrideNotAllowed(f"{module} does not allow {key!r} to be set")
        out[key] = text
    return out


def redact(items: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``items`` without secret keys."""
    return {k: v for k, v in items.items() if k not in SECRET_KEYS}


def _is_pollable(fObj: IO[Any]) -> bool:
    try:
        mode = os.fstat(fObj.fileno()).st_mode
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


async def _read_fd(loop: asyncio.AbstractEventLoop, fd: int) -> bytes:
    """Read ``fd`` to EOF through the loop's reader callbacks."""
    done: asyncio.Future[bytes] = loop.create_future()
    chunks: list[bytes] = []
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            loop.remove_reader(fd)
            if not done.done():
                done.set_exception(exc)
            return
        if chunk:
            chunks.append(chunk)
            return
        loop.remove_reader(fd)
        if not done.done():
            done.set_result(b"".join(chunks))

    loop.add_reader(fd, readable)
    try:
        return await done
    finally:
        loop.remove_reader(fd)


async def read_stream(
    fObj: IO[Any], timeout: float, loop: asyncio.AbstractEventLoop, source: str = "<stdin>"
) -> configparser.ConfigParser:
    """
    Read a whole config from ``fObj`` up to EOF and parse it.

    Pipes, sockets and terminals are polled by ``loop``; other objects
    (files, ``io.StringIO``) are read directly. Raise
    :class:`asyncio.TimeoutError` if EOF is not seen within ``timeout``
    seconds, :class:`ConfigError` if the text is malformed.
    """
    if _is_pollable(fObj):
        raw: bytes | str = await asyncio.wait_for(_read_fd(loop, fObj.fileno()), timeout)
    else:
        raw = fObj.read()
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1 if isinstance(raw, bytes) else None
        raise ConfigError("bytes that are not UTF-8", source, line) from None
    return parse_config(text, source=source)
