"""
The route table of :class:`~.router.Router`: URL patterns (``/jobs/<guid>``,
``/jobs/<guid>/proxy/<rest:path>``) compiled once, and the one match
that says which rule answers a path and a method, with werkzeug's
semantics, which the control API's answers were made with:

- ``<name>`` is one non-empty segment; ``<path:name>`` one or more
  characters, slashes too; ``<rest:name>`` the rest of the path, possibly
  empty;
- leading slashes count as one (``//jobs`` is ``/jobs``); elsewhere
  slashes are strict: a route ``/x/`` asked as ``/x``, or ``/x`` asked
  as ``/x/``, is not found; so is a path that matches only once its
  doubled slashes are merged (werkzeug redirected both; we answer 404);
- a path that matches only with another method is
  :class:`~turberfield_twisted.errors.MethodNotAllowed`, naming the
  methods that would do; a route for GET answers HEAD too;
- the rule with more fixed segments before its first pattern wins a
  path two rules match.

This module loads nothing of Twisted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from turberfield_twisted.errors import MethodNotAllowed, RouteNotFound

__all__ = ["CONVERTERS", "Rule", "RuleTable"]

#: Each pattern a ``<kind:name>`` may use: its regular expression.
CONVERTERS: Mapping[str, str] = {
    "default": r"[^/]+",  # one segment (werkzeug's ``string``)
    "string": r"[^/]+",
    "path": r"[^/].*?",  # werkzeug's ``path``: at least a character, slashes too
    "rest": r".*",  # the rest of a path, possibly empty
}

_PART = re.compile(r"<(?:([a-z]+):)?([A-Za-z_][A-Za-z0-9_]*)>")
#: werkzeug's merge of doubled slashes (two at a time, as it does).
_DOUBLED = re.compile(r"/{2,}?")


def _compile(pattern: str) -> tuple[re.Pattern[str], tuple[tuple[int, ...], ...]]:
    """``pattern`` as a regular expression, and its sort key (fixed segments first)."""
    out: list[str] = []
    at = 0
    for found in _PART.finditer(pattern):
        kind = found.group(1) or "default"
        if kind not in CONVERTERS:
            raise ValueError(f"route {pattern!r}: no converter {kind!r}")
        out.append(re.escape(pattern[at:found.start()]))
        out.append(f"(?P<{found.group(2)}>{CONVERTERS[kind]})")
        at = found.end()
    out.append(re.escape(pattern[at:]))
    key = tuple((0,) if _PART.search(seg) is None else (1,) for seg in pattern.split("/"))
    return re.compile("".join(out)), key


@attrs.frozen
class Rule:
    """
    One route: its ``rule`` (the URL pattern), the ``methods`` it answers
    (None: any), its ``endpoint`` (the handler's name; a branch route's
    catch-all rule has ``_branch`` added), ``segments`` (how many of the
    path's segments it consumes: they move from ``postpath`` to
    ``prepath``) and the ``handler`` it calls.
    """

    rule: str
    methods: frozenset[str] | None
    endpoint: str
    segments: int
    handler: Callable[..., Any] = attrs.field(eq=False, repr=False)
    regex: re.Pattern[str] = attrs.field(eq=False, repr=False)
    key: tuple[tuple[int, ...], ...] = attrs.field(eq=False, repr=False)

    @classmethod
    def make(cls, rule: str, methods: Iterable[str] | None, endpoint: str, segments: int,
             handler: Callable[..., Any]) -> Rule:
        """A rule for ``rule``; a route for GET answers HEAD too (as werkzeug's)."""
        if not rule.startswith("/"):
            raise ValueError(f"route {rule!r} must start with /")
        named = None
        if methods is not None:
            named = frozenset(method.upper() for method in methods)
            if "GET" in named:
                named |= {"HEAD"}
        regex, key = _compile(rule)
        return cls(rule, named, endpoint, segments, handler, regex, key)

    def match(self, path: str) -> dict[str, str] | None:
        """The values of the rule's patterns in ``path``, if ``path`` is one of its."""
        found = self.regex.fullmatch(path)
        return None if found is None else found.groupdict()


class RuleTable:
    """The rules of a router, and the match that picks one for a request."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self._ordered: list[Rule] | None = None

    def add(self, rule: Rule) -> None:
        """Add ``rule`` (after the others with as many fixed segments first)."""
        self.rules.append(rule)
        self._ordered = None

    def _find(self, path: str, method: str, allowed: set[str]
              ) -> tuple[Rule, dict[str, str]] | None:
        if self._ordered is None:
            self._ordered = sorted(self.rules, key=lambda rule: rule.key)
        for rule in self._ordered:
            values = rule.match(path)
            if values is None:
                continue
            if rule.methods is None or method in rule.methods:
                return rule, values
            allowed |= rule.methods
        return None

    def _slash_required(self, path: str, method: str) -> bool:
        """A rule ending in ``/`` answers ``path + "/"`` with ``method`` (werkzeug redirected)."""
        return any(rule.rule.endswith("/") and rule.match(path + "/") is not None
                   and (rule.methods is None or method in rule.methods)
                   for rule in self.rules)

    def match(self, path: str, method: str) -> tuple[Rule, dict[str, str]]:
        """
        The rule that answers ``method`` on ``path`` (a decoded path
        starting with ``/``) and the values of its patterns; raise
        :class:`RouteNotFound` or :class:`MethodNotAllowed`.
        """
        path = "/" + path.lstrip("/") if path else path  # werkzeug's: leading slashes are one
        allowed: set[str] = set()
        found = self._find(path, method, allowed)
        if found is not None:
            return found
        if self._slash_required(path, method):
            raise RouteNotFound("only with a trailing slash")
        merged = _DOUBLED.sub("/", path)
        if merged != path:
            if self._find(merged, method, allowed) is not None or self._slash_required(
                    merged, method):
                raise RouteNotFound("only with its slashes merged")
        if allowed:
            raise MethodNotAllowed(sorted(allowed))
        raise RouteNotFound()
