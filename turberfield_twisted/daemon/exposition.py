"""
The Prometheus text format, written here: metric families as attrs records
(:class:`CounterFamily`, :class:`GaugeFamily`, :class:`InfoFamily`,
:class:`HistogramFamily`) and :func:`render`, which writes them byte for
byte as ``prometheus_client`` 0.26's ``generate_latest`` writes the same
families. The daemon does not
load ``prometheus_client``: its ``exposition`` module imports the standard
library's ``ssl`` (and with it libssl and libcrypto), which the daemon
otherwise never needs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import ClassVar

import attrs

__all__ = ["CONTENT_TYPE", "CounterFamily", "Family", "GaugeFamily", "HistogramFamily",
           "InfoFamily", "go_float", "render"]

#: The content type of :func:`render`'s text (``prometheus_client``'s
#: ``CONTENT_TYPE_LATEST`` in 0.26: the text format's version 1.0.0, of which
#: 0.0.4 with names of the legacy character set, as here, is a part).
CONTENT_TYPE = "text/plain; version=1.0.0; charset=utf-8"

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _names(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


def _metric_name(instance: Family, attribute: attrs.Attribute[str], name: str) -> None:
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"not a Prometheus metric name: {name!r}")


def _check_label_names(names: Iterable[str]) -> None:
    for name in names:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"not a Prometheus label name: {name!r}")


def _label_names(instance: Family, attribute: attrs.Attribute[tuple[str, ...]],
                 names: tuple[str, ...]) -> None:
    _check_label_names(names)


def go_float(value: float) -> str:
    """
    ``value`` as Prometheus writes a float (Go's ``strconv``): ``1.0``,
    ``0.5``, ``2.5e-05``, ``1.234567e+06``, ``+Inf``, ``-Inf``, ``NaN``.
    """
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        # Python writes 1234567.0 where Go writes 1.234567e+06 (from 1e6 up;
        # both use an exponent from 1e16 up, where the dot is the second character).
        digits = (text[:dot] + text[dot + 1:]).rstrip("0")
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line(name: str, labels: Mapping[str, str], value: float) -> str:
    """One sample line; labels sorted by name, as ``prometheus_client`` writes them."""
    if not labels:
        return f"{name} {go_float(value)}\n"
    pairs = ",".join(f'{key}="{_escape_value(labels[key])}"' for key in sorted(labels))
    return f"{name}{{{pairs}}} {go_float(value)}\n"


@attrs.define
class Family:
    """
    A metric family: its ``name``, ``help`` text and ``labels`` (the label
    names each sample gives values for, in order).
    """

    #: The family's type in the text's ``# TYPE`` line.
    kind: ClassVar[str] = "untyped"
    #: What the text adds to ``name`` (``_total`` for counters, ``_info`` for infos).
    suffix: ClassVar[str] = ""

    name: str = attrs.field(validator=_metric_name)
    help: str
    labels: tuple[str, ...] = attrs.field(default=(), converter=_names, validator=_label_names)

    def _labelled(self, values: Sequence[str]) -> dict[str, str]:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name}: {len(values)} label values for {self.labels!r}")
        return dict(zip(self.labels, values, strict=True))

    def lines(self) -> Iterator[str]:
        """The family's sample lines."""
        return iter(())

    def text(self) -> str:
        """``# HELP``, ``# TYPE`` and the sample lines."""
        name = self.name + self.suffix
        head = f"# HELP {name} {_escape_help(self.help)}\n# TYPE {name} {self.kind}\n"
        return head + "".join(self.lines())


@attrs.define
class GaugeFamily(Family):
    """A value that goes up and down: a sample for each set of label values."""

    kind: ClassVar[str] = "gauge"
    samples: list[tuple[dict[str, str], float]] = attrs.field(factory=list, init=False)

    def add(self, values: Sequence[str], value: float) -> None:
        """The sample of label ``values`` (one for each of ``labels``) is ``value``."""
        self.samples.append((self._labelled(values), value))

    def lines(self) -> Iterator[str]:
        name = self.name + self.suffix
        return (_line(name, labels, value) for labels, value in self.samples)


@attrs.define
class CounterFamily(GaugeFamily):
    """A count that only goes up; written ``NAME_total``, as its help and type lines name it."""

    kind: ClassVar[str] = "counter"
    suffix: ClassVar[str] = "_total"


@attrs.define
class InfoFamily(Family):
    """Facts as labels on a sample of 1, written ``NAME_info`` and typed gauge."""

    kind: ClassVar[str] = "gauge"
    suffix: ClassVar[str] = "_info"
    samples: list[dict[str, str]] = attrs.field(factory=list, init=False)

    def add(self, values: Sequence[str], info: Mapping[str, str]) -> None:
        """One sample: label ``values``, and the facts ``info`` as more labels."""
        _check_label_names(info)
        self.samples.append({**self._labelled(values), **info})

    def lines(self) -> Iterator[str]:
        name = self.name + self.suffix
        return (_line(name, labels, 1.0) for labels in self.samples)


@attrs.define
class HistogramFamily(Family):
    """
    Observations counted into buckets: ``NAME_bucket`` with ``le``, then
    ``NAME_count`` and ``NAME_sum``, for each set of label values. The
    first bound is 0 or more (with a negative one ``prometheus_client``
    writes no count or sum; :meth:`add` refuses it).
    """

    kind: ClassVar[str] = "histogram"
    samples: list[tuple[dict[str, str], list[tuple[str, float]], float]] = attrs.field(
        factory=list, init=False)

    def add(self, values: Sequence[str], buckets: Sequence[tuple[str, float]],
            total: float) -> None:
        """
        The histogram of label ``values``: cumulative ``(le, count)`` pairs,
        ascending with ``+Inf`` last (its count is the number observed), and
        the ``total`` of what was observed.
        """
        if not buckets or buckets[-1][0] != "+Inf" or float(buckets[0][0]) < 0:
            raise ValueError(f"{self.name}: buckets from 0 up to +Inf, not {buckets!r}")
        self.samples.append((self._labelled(values), list(buckets), total))

    def lines(self) -> Iterator[str]:
        for labels, buckets, total in self.samples:
            for bound, count in buckets:
                yield _line(f"{self.name}_bucket", {**labels, "le": bound}, count)
            yield _line(f"{self.name}_count", labels, buckets[-1][1])
            yield _line(f"{self.name}_sum", labels, total)


def render(families: Iterable[Family]) -> bytes:
    """The Prometheus text of ``families``, in their order, as UTF-8."""
    return "".join(family.text() for family in families).encode("utf-8")
