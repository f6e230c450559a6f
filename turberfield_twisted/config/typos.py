"""
Keys that look like typos of the daemon's own.

A module's section holds its worker's own keys as well as the daemon's
(restart policy, limits, ``warm`` ...), so no key there is refused; but a
key that is not the daemon's and is close to one of them (``restrat``,
``max_restart``) most likely is a typo, which would pass silently: it is
warned of, with its file and line. Nothing here quotes a value.
"""

from __future__ import annotations

import configparser
import difflib
from collections.abc import Collection, Iterable, Mapping

from turberfield_twisted.configtext import Config, own_keys

__all__ = ["CUTOFF", "did_you_mean", "near", "other_names", "typo_warnings"]

#: How alike (difflib's ratio, 0 to 1) a key must be to a known one to be taken for a typo.
CUTOFF = 0.8


def near(key: str, known: Iterable[str]) -> str | None:
    """The key of ``known`` most like ``key`` (at least :data:`CUTOFF` alike), or None."""
    found = difflib.get_close_matches(key, sorted(known), n=1, cutoff=CUTOFF)
    return found[0] if found else None


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'KEY'?)`` for the known key nearest ``key``, or nothing."""
    found = near(key, known)
    return f" (did you mean {found!r}?)" if found else ""


def other_names(name: str, known: Collection[str], what: str, shown: int = 5) -> str:
    """
    `` (did you mean 'X'?)`` for the one of ``known`` (names of ``what``)
    nearest ``name``, else `` (WHAT: A, B, ...)`` naming up to ``shown``.
    """
    found = did_you_mean(name, known)
    if found or not known:
        return found
    names = sorted(known)
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return f" ({what}: {', '.join(names[:shown])}{more})"


def _where(cfg: configparser.ConfigParser, section: str, key: str) -> str:
    if isinstance(cfg, Config):
        source, line = cfg.origin(section, key)
        return source if line is None else f"{source}, line {line}"
    return "<config>"


def typo_warnings(cfg: configparser.ConfigParser, sections: Mapping[str, Collection[str]],
                  module_keys: Collection[str], initiator: str,
                  initiator_keys: Collection[str]) -> tuple[str, ...]:
    """
    A warning for each key of ``sections`` (module sections, each with the
    keys it lists as its worker's own: ``overridable``; and DEFAULT's,
    once) that is not one of ``module_keys`` (the daemon's own keys of a
    module's section) but is one of ``initiator_keys`` (read in section
    ``initiator`` only), or is close to one of either: where it is, and
    what it is like.
    """
    known = {*module_keys, *initiator_keys}
    warnings = []
    for section, own in [(configparser.DEFAULTSECT, ()), *sections.items()]:
        keys = (cfg.defaults() if section == configparser.DEFAULTSECT
                else own_keys(cfg, section))
        for key in keys:  # in the file's order
            if key in module_keys or key in own:
                continue
            if key in initiator_keys:
                like = f"is read in [{initiator}] only"
            elif (found := near(key, known)) is not None:
                like = f"is not one the daemon reads (did you mean {found!r}?)"
            else:
                continue
            warnings.append(f"{_where(cfg, section, key)}: key {key!r} in [{section}] {like}:"
                            " it is passed to the worker as it is")
    return tuple(warnings)
