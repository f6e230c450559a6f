"""
Declared jobs: a ``[job:NAME]`` section (a job started with the daemon),
checked as a launch of its module would be, and the jobs each requires
checked whole (all declared, no cycle). :func:`~.settings.check_config`
calls these.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from turberfield_twisted.config.job_section import check_overrides
from turberfield_twisted.config.names import GUID, RESERVED_KEYS, SESSION
from turberfield_twisted.config.policy import LIMIT_KEYS, Limits
from turberfield_twisted.config.readers import Section, frozen_map, names
from turberfield_twisted.config.section_keys import JOB_KEYS, LIMIT_READERS
from turberfield_twisted.config.typos import did_you_mean
from turberfield_twisted.errors import BadOverride, OverrideNotAllowed

if TYPE_CHECKING:  # settings imports this module: the name is for mypy only
    from turberfield_twisted.config.settings import ModuleSettings

__all__ = ["JOB_PREFIX", "DeclaredJob", "check_declared", "check_requires",
           "no_limits_on_slurm"]


#: The prefix of a declared job's section: ``[job:NAME]``.
JOB_PREFIX = "job:"


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


def no_limits_on_slurm(section: Section, limits: Limits) -> None:
    """A worker on a cluster node is not this host's process: Slurm limits it."""
    for key in LIMIT_KEYS:
        if getattr(limits, key) is not None:
            raise section.error(key, "can't be set on the workers of a module that Slurm runs"
                                     " (on a cluster node): use slurm_args, such as --mem=,"
                                     " --time=")


def check_declared(cfg: configparser.ConfigParser, header: str, guid: str,
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
    for key in sorted(section.own - JOB_KEYS):
        try:
            overrides.update(check_overrides(cfg, module, {key: section.text(key)}))
        except OverrideNotAllowed:
            reason = ("is one the initiator sets" if key in RESERVED_KEYS else
                      "is not one its module lists as overridable (nor module, session,"
                      " requires or a limit)"
                      + did_you_mean(key, {*JOB_KEYS, *modules[module].overridable}))
            raise section.error(key, reason) from None
        except BadOverride:
            raise section.error(key, "must be a short key name with a one-line value of at"
                                     " most 4096 characters") from None
    requires = names(section.text("requires")) if section.has("requires") else ()
    limits = Limits(**section.read(LIMIT_READERS))
    if modules[module].launcher == "slurm":
        no_limits_on_slurm(section, limits)
    return DeclaredJob(name=name, module=module, session=session, overrides=overrides,
                       requires=requires, limits=limits,
                       source=section.origin()[0], line=section.origin()[1])


def check_requires(cfg: configparser.ConfigParser, declared: Mapping[str, DeclaredJob]) -> None:
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
