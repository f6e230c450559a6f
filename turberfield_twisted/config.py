"""
Configuration: the ConfigParser factory (a :class:`Config` that remembers
where each key came from), reading a config stream with a timeout, building
a job's section and writing what a job may see.

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

from .errors import BadOverride, OverrideNotAllowed

__all__ = [
    "EVENT_NAME",
    "GUID",
    "RESERVED_KEYS",
    "SECRET_KEYS",
    "SESSION",
    "BadOverride",
    "Config",
    "ConfigError",
    "NoConfigStream",
    "OverrideNotAllowed",
    "check_overrides",
    "job_config_text",
    "make_config",
    "own_keys",
    "parse_config",
    "read_stream",
    "redact",
    "render_job_config",
    "section_items",
    "write_job_section",
]

#: Keys whose values are never shown in logs or API output.
SECRET_KEYS = frozenset({"token", "admin_token", "secret"})
#: Keys the initiator writes into a job's section: never set by an override.
RESERVED_KEYS = frozenset({
    "token", "admin_token", "listen_port", "listen_addr", "parent_addr", "parent_port",
    "session", "module", "overridable",
})
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
#: A job's guid: given at launch, or a declared job's name.
GUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: A worker's own event name (``POST /jobs/{guid}/events``; a hook's ``worker:NAME``).
EVENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
#: A job's session: at most 256 characters, no control characters nor ``$``.
SESSION = re.compile(r"^[^\x00-\x1f\x7f$]{0,256}$")
MAX_VALUE = 4096


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


_NO_ORIGIN: tuple[str, int | None] = ("<config>", None)
_COMMENT_PREFIXES = ("#", ";")


class Config(configparser.ConfigParser):
    """
    A ConfigParser with ExtendedInterpolation and case-kept keys that
    remembers the source and line of each key and section header it reads
    through :meth:`read_file` or ``read_string`` (and so :func:`parse_config`).

    Text read later over earlier text takes the later origin. A key set by
    code (``set``, ``read_dict``, item assignment) has no line. ``read()`` of
    file names is not tracked: parse the text instead.
    """

    def __init__(self) -> None:
        self._origins: dict[tuple[str, str | None], tuple[str, int]] = {}
        super().__init__(interpolation=configparser.ExtendedInterpolation())

    def optionxform(self, optionstr: str) -> str:
        """Keys keep their case."""
        return optionstr

    def origin(self, section: str, key: str | None = None) -> tuple[str, int | None]:
        """
        The (source, line) of ``key`` in ``section``, or of the section's
        header when ``key`` is None. A key that ``section`` inherits from
        DEFAULT has DEFAULT's origin; one set by code has no line.
        """
        if key is None:
            return self._origins.get((section, None), _NO_ORIGIN)
        if (
            section != self.default_section
            and key not in own_keys(self, section)
            and key in self.defaults()
        ):
            section = self.default_section
        return self._origins.get((section, key), _NO_ORIGIN)

    def read_file(self, f: Iterable[str], source: str | None = None) -> None:
        """Read ``f`` as the base class does, then record where its keys are."""
        if source is None:
            source = getattr(f, "name", "<???>")
        lines = list(f)
        super().read_file(lines, source)
        self._record(lines, str(source))

    def set(self, section: str, option: str, value: str | None = None) -> None:
        """Set a key as the base class does; it no longer has a line."""
        super().set(section, option, value)
        self._origins.pop((section, self.optionxform(option)), None)

    def remove_option(self, section: str, option: str) -> bool:
        """Remove a key and its origin."""
        self._origins.pop((section, self.optionxform(option)), None)
        return super().remove_option(section, option)

    def remove_section(self, section: str) -> bool:
        """Remove a section and the origins of its header and keys."""
        for where in [where for where in self._origins if where[0] == section]:
            del self._origins[where]
        return super().remove_section(section)

    def _record(self, lines: list[str], source: str) -> None:
        """
        Note the line of each section header and key in ``lines``, which the
        base class has just parsed, following its rules: comments and blank
        lines are skipped, and a line indented deeper than its key continues
        that key's value.
        """
        section: str | None = None
        key: str | None = None
        key_indent = 0
        for lineno, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith(_COMMENT_PREFIXES):
                continue
            first = self.NONSPACECRE.search(line)
            indent = first.start() if first else 0
            if key is not None and indent > key_indent:
                continue
            key_indent = indent
            header = self.SECTCRE.match(text)
            if header:
                section, key = header.group("header"), None
                self._origins[(section, None)] = (source, lineno)
                continue
            option = self.OPTCRE.match(text)
            if option and section is not None:
                key = self.optionxform(option.group("option").rstrip())
                self._origins[(section, key)] = (source, lineno)


def make_config() -> Config:
    """A :class:`Config`: ExtendedInterpolation, case-kept keys, origins kept."""
    return Config()


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
    Parse ``text`` into ``into`` (a new :class:`Config` by default) and check
    that every value interpolates. Raise :class:`ConfigError` naming the line.
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
                where = cfg.origin(section, key) if isinstance(cfg, Config) else _NO_ORIGIN
                raise ConfigError(
                    f"key {key!r} in [{section}] refers to a missing or bad value"
                    f" ({type(exc).__name__})",
                    *(where if where[1] is not None else (source, None)),
                ) from None
    return cfg


def own_keys(cfg: configparser.ConfigParser, section: str) -> list[str]:
    """The keys of ``section`` that are not inherited from DEFAULT, uninterpolated."""
    return list(cfg._sections.get(section, {}))  # type: ignore[attr-defined]


def section_items(cfg: configparser.ConfigParser, section: str) -> dict[str, str]:
    """The interpolated keys of ``section`` that are not inherited from DEFAULT."""
    return {key: cfg.get(section, key) for key in own_keys(cfg, section)}


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


def write_job_section(
    cfg: configparser.ConfigParser, guid: str, module: str, items: Mapping[str, str]
) -> None:
    """
    (Re)write job ``guid``'s section: its module section's own keys, then
    ``items`` (overrides and what the initiator sets) over them. Every
    value is stored resolved and escaped, so that it is never interpolated
    again (a session of ``${other:secret}`` stays those characters).
    """
    section = {**section_items(cfg, module), **items}
    if cfg.has_section(guid):
        cfg.remove_section(guid)
    cfg.add_section(guid)
    for key, value in section.items():
        cfg.set(guid, key, _escape(value))


def render_job_config(
    cfg: configparser.ConfigParser, guid: str, module: str, overrides: Mapping[str, str], *,
    port: int, session: str | None, parent: tuple[str, int], token: str,
) -> str:
    """
    (Re)write job ``guid``'s section as the initiator does at each start
    (its module section's keys, ``overrides``, then ``module``,
    ``listen_port``, ``session``, ``parent_addr``, ``parent_port`` and
    ``token``) and return what its worker reads on stdin (see
    :func:`job_config_text`).
    """
    addr, parent_port = parent
    write_job_section(cfg, guid, module, {
        **overrides, "module": module, "listen_port": str(port), "session": session or "",
        "parent_addr": addr, "parent_port": str(parent_port), "token": token})
    return job_config_text(cfg, guid)


def check_overrides(
    cfg: configparser.ConfigParser, module: str, overrides: Any
) -> dict[str, str]:
    """
    Validate per-job overrides for ``module``: a mapping of key to a string,
    number or boolean, each key listed in the section's ``overridable``
    (comma or space separated) and none of :data:`RESERVED_KEYS`.

    Return them as strings. Raise :class:`BadOverride` for a malformed
    mapping, :class:`OverrideNotAllowed` for a key that may not be set.
    """
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise BadOverride("config must be an object of key: value")
    allowed = set(cfg.get(module, "overridable", fallback="").replace(",", " ").split())
    out: dict[str, str] = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise BadOverride("config keys must be short names of letters, digits, _ . -")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise BadOverride(f"config value of {key!r} must be a string, number or boolean")
        text = str(value)
        if len(text) > MAX_VALUE or "\n" in text or "\r" in text:
            raise BadOverride(f"config value of {key!r} must be one line of at most {MAX_VALUE}")
        if key in RESERVED_KEYS or key not in allowed:
            raise OverrideNotAllowed(f"{module} does not allow {key!r} to be set")
        out[key] = text
    return out


def redact(items: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``items`` without secret keys."""
    return {k: v for k, v in items.items() if k not in SECRET_KEYS}


class NoConfigStream(Exception):
    """The stream cannot hold a config: a terminal, say (the config comes on a pipe or a file)."""


def _kind(fObj: IO[Any]) -> str:
    """'pipe' (a FIFO or socket: polled), 'terminal', or 'file' (read at once)."""
    try:
        fd = fObj.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return "file"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "pipe"
    return "terminal" if os.isatty(fd) else "file"  # /dev/null is a file here


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
    fObj: IO[Any], timeout: float | None, loop: asyncio.AbstractEventLoop,
    source: str = "<stdin>"
) -> configparser.ConfigParser:
    """
    Read a whole config from ``fObj`` up to EOF and parse it.

    Pipes and sockets are polled by ``loop``; files, ``/dev/null`` and
    in-memory streams are read at once. Raise :class:`asyncio.TimeoutError`
    if EOF is not seen within ``timeout`` seconds, :class:`NoConfigStream`
    for a terminal (nobody types a config), :class:`ConfigError` if the
    text is malformed.
    """
    kind = _kind(fObj)
    if kind == "terminal":
        raise NoConfigStream(f"{source} is a terminal")
    if kind == "pipe":
        raw: bytes | str = await asyncio.wait_for(_read_fd(loop, fObj.fileno()), timeout)
    else:
        raw = getattr(fObj, "buffer", fObj).read()
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1 if isinstance(raw, bytes) else None
        raise ConfigError("bytes that are not UTF-8", source, line) from None
    return parse_config(text, source=source)
