"""
A warm template's states, and every move between them, declared once in
:data:`TEMPLATE_MOVES`, as a job's are in
:mod:`turberfield_twisted.jobs.transitions`::

    starting --said ready--> ready
    starting --said refused--> refused       (its workers start cold until a reload)
    starting, ready --retire--> retired      (a reload: it forks no more)
    starting, ready --lost--> dead           (its socket closed)
    starting, ready, retired --ended--> dead (its process ended)

The launcher starts a new template in place of a dead one after a delay.
Only :meth:`~turberfield_twisted.launch.warm.template_handle.Template.move`
changes a template's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, StrEnum
from types import MappingProxyType

__all__ = ["TEMPLATE_MOVES", "TemplateState", "TemplateTold"]


class TemplateState(StrEnum):
    """Where a template is."""

    #: Its process is importing the module.
    STARTING = "starting"
    #: It said it is ready: it forks workers.
    READY = "ready"
    #: It said the module can't be forked safely, and exited.
    REFUSED = "refused"
    #: A reload replaced it: it forks no more and exits after its last worker.
    RETIRED = "retired"
    #: Its process or its socket is gone.
    DEAD = "dead"


class TemplateTold(Enum):
    """What moves a template: what it said, what the launcher asked, what it saw."""

    SAID_READY = "said ready"
    SAID_REFUSED = "said refused"
    RETIRE = "retire"
    #: Its socket closed (the process is ending).
    LOST = "lost"
    #: Its process ended.
    ENDED = "ended"


_S, _R, _F = TemplateState.STARTING, TemplateState.READY, TemplateState.REFUSED
_T, _D = TemplateState.RETIRED, TemplateState.DEAD

#: ``(state, told) -> next state``, as the diagram above draws it; a pair not
#: here changes nothing (``refused`` and ``dead`` stay as they are).
TEMPLATE_MOVES: Mapping[tuple[TemplateState, TemplateTold], TemplateState] = MappingProxyType({
    (source, told): target
    for sources, told, target in (
        ((_S,), TemplateTold.SAID_READY, _R),
        ((_S,), TemplateTold.SAID_REFUSED, _F),
        ((_S, _R), TemplateTold.RETIRE, _T),
        ((_S, _R), TemplateTold.LOST, _D),
        ((_S, _R, _T), TemplateTold.ENDED, _D),
    )
    for source in sources
})
