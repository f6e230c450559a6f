"""
The config text both sides read and write: the ConfigParser factory (a
:class:`Config` that remembers where each key came from), parsing, a
section's own keys, the text a job reads (``[DEFAULT]`` less secrets and
its own section) and what it is shown, and redaction. A job's section is
composed by :mod:`turberfield_twisted.config.job_section`; reading a
stream with a timeout is :mod:`turberfield_twisted.worker.stdin`'s.

Values may hold secrets, so no error raised here ever quotes one.
"""

from __future__ import annotations

import configparser
import io
from collections.abc import Iterable, Mapping
from typing import TypeVar

from turberfield_twisted.errors import ConfigError

__all__ = [
    "SECRET_KEYS",
    "Config",
    "job_config_text",
    "job_config_view",
    "make_config",
    "origin",
    "own_keys",
    "parse_config",
    "redact",
    "section_items",
]

#: Keys whose values are never shown in logs or API output.
SECRET_KEYS = frozenset({"token", "admin_token", "secret"})


_V = TypeVar("_V")


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
                where = origin(cfg, section, key)
                raise ConfigError(
                    f"key {key!r} in [{section}] refers to a missing or bad value"
                    f" ({type(exc).__name__})",
                    *(where if where[1] is not None else (source, None)),
                ) from None
    return cfg


def origin(cfg: configparser.ConfigParser, section: str,
           key: str | None = None) -> tuple[str, int | None]:
    """Where ``cfg`` read ``key`` of ``section`` (see :meth:`Config.origin`); no line if unknown."""
    return cfg.origin(section, key) if isinstance(cfg, Config) else _NO_ORIGIN


def own_keys(cfg: configparser.ConfigParser, section: str) -> list[str]:
    """The keys of ``section`` that are not inherited from DEFAULT, uninterpolated."""
    # configparser has no public way to tell a section's own keys from those it
    # inherits (options(), items() and the section proxy merge DEFAULT in): its
    # private ``_sections`` holds the own ones. Checked on Python 3.11; used here only.
    return list(cfg._sections.get(section, {}))  # type: ignore[attr-defined]


def section_items(cfg: configparser.ConfigParser, section: str) -> dict[str, str]:
    """The interpolated keys of ``section`` that are not inherited from DEFAULT."""
    return {key: cfg.get(section, key) for key in own_keys(cfg, section)}


def _escape(value: str) -> str:
    return value.replace("$", "$$")


def job_config_text(
    cfg: configparser.ConfigParser,
    guid: str,
    section: Mapping[str, str] | None = None,
    exclude_default: Iterable[str] = SECRET_KEYS,
) -> str:
    """
    Render what a job may see: ``cfg``'s ``[DEFAULT]`` (less secret keys)
    and its own ``[guid]`` section, ``section`` (values as they are meant)
    if given, else ``cfg``'s section ``guid``; values interpolated and
    escaped so the job needs no other section to read them.
    """
    # Written by a RawConfigParser: the values are escaped already, so none
    # needs the interpolation's checks (a tenth of the cost, once per spawn).
    out = configparser.RawConfigParser()
    out.optionxform = str  # type: ignore[assignment,method-assign]
    skip = set(exclude_default)
    for key in cfg.defaults():
        if key not in skip:
            out.set(configparser.DEFAULTSECT, key,
                    _escape(cfg.get(configparser.DEFAULTSECT, key)))
    out.add_section(guid)
    own = section_items(cfg, guid) if section is None else section
    for key, value in own.items():
        out.set(guid, key, _escape(value))
    buf = io.StringIO()
    out.write(buf)
    return buf.getvalue()


def job_config_view(cfg: configparser.ConfigParser,
                    section: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """
    What a job is shown of its config (``GET /config/{guid}``): ``cfg``'s
    ``[DEFAULT]`` and its own ``section``, values interpolated, no secret keys.
    """
    default = {key: cfg.get(configparser.DEFAULTSECT, key) for key in cfg.defaults()}
    return {"default": redact(default), "section": redact(section)}


def redact(items: Mapping[str, _V]) -> dict[str, _V]:
    """A copy of ``items`` without secret keys."""
    return {k: v for k, v in items.items() if k not in SECRET_KEYS}
