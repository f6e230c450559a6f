"""
daemon/exposition.py writes the Prometheus text as ``prometheus_client``
writes it: the same families give the same bytes, and the same content type.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from turberfield_twisted.daemon.exposition import (
    CONTENT_TYPE,
    CounterFamily,
    Family,
    GaugeFamily,
    HistogramFamily,
    InfoFamily,
    go_float,
    render,
)
from turberfield_twisted.daemon.metrics import READY_BUCKETS, RELAY_BUCKETS, Histogram

#: Label values that need escaping: a backslash, a newline, a double quote, and UTF-8.
AWKWARD = ['back\\slash', 'new\nline', 'say "hi"', "caf\u00e9 \u2603", ""]
#: Values with each of Go's float forms.
VALUES = [0, 1, 0.5, 1e-05, 2.5e-05, 123, 1234567, 10**6, 10**15 + 1, 2**53, 10**17,
          1.5e16, 3.25, 1e300, -1, -1234567.0, float("inf"), float("-inf")]


class _Collected(Collector):
    """A collector of ``prometheus_client`` families, for ``generate_latest``."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def both() -> tuple[list[Family], list[Metric]]:
    """The same figures as our families and as ``prometheus_client``'s."""
    ours: list[Family] = []
    theirs: list[Metric] = []

    info, their_info = (InfoFamily("proactor", "The proactor package."),
                        InfoMetricFamily("proactor", "The proactor package."))
    info.add([], {"version": "1.2.3"})
    their_info.add_metric([], {"version": "1.2.3"})
    labelled, their_labelled = (
        InfoFamily("build", "Built \\ on\ntwo lines.", labels=["host"]),
        InfoMetricFamily("build", "Built \\ on\ntwo lines.", labels=["host"]))
    labelled.add(["h\"1"], {"commit": "a\\b", "branch": "x\ny"})
    their_labelled.add_metric(["h\"1"], {"commit": "a\\b", "branch": "x\ny"})
    ours += [info, labelled]
    theirs += [their_info, their_labelled]

    counter, their_counter = (CounterFamily("jobs_started", "Jobs started."),
                              CounterMetricFamily("jobs_started", "Jobs started."))
    counter.add([], 0)
    their_counter.add_metric([], 0)
    by_label, their_by_label = (
        CounterFamily("transitions", 'Moves, by "module" \\ state.', labels=["module", "state"]),
        CounterMetricFamily("transitions", 'Moves, by "module" \\ state.',
                            labels=["module", "state"]))
    gauge, their_gauge = (GaugeFamily("jobs", "Jobs.", labels=["module"]),
                          GaugeMetricFamily("jobs", "Jobs.", labels=["module"]))
    plain, their_plain = (GaugeFamily("hooks", "Hooks."), GaugeMetricFamily("hooks", "Hooks."))
    for n, value in enumerate(VALUES):
        by_label.add([f"m{n}", "ready"], abs(value))
        their_by_label.add_metric([f"m{n}", "ready"], abs(value))
        gauge.add([AWKWARD[n % len(AWKWARD)] + str(n)], value)
        their_gauge.add_metric([AWKWARD[n % len(AWKWARD)] + str(n)], value)
    plain.add([], 7)
    their_plain.add_metric([], 7)
    empty, their_empty = (GaugeFamily("none_yet", "No sample.", labels=["module"]),
                          GaugeMetricFamily("none_yet", "No sample.", labels=["module"]))
    ours += [counter, by_label, gauge, plain, empty]
    theirs += [their_counter, their_by_label, their_gauge, their_plain, their_empty]

    ready, their_ready = (
        HistogramFamily("ready_seconds", "Spawn to ready.", labels=["module"]),
        HistogramMetricFamily("ready_seconds", "Spawn to ready.", labels=["module"]))
    for module, observed in (("a.b", [0.01, 0.3, 0.3, 7.0, 120.0]), ("c\\d", [])):
        histogram = Histogram(READY_BUCKETS)
        for seconds in observed:
            histogram.observe(seconds)
        ready.add([module], histogram.buckets(), histogram.total)
        their_ready.add_metric([module], histogram.buckets(), histogram.total)
    relay = Histogram(RELAY_BUCKETS)
    for seconds in (1e-05, 0.002, 0.0025, 0.7, 31.0):
        relay.observe(seconds)
    latency, their_latency = (HistogramFamily("relay_seconds", "Relay latency."),
                              HistogramMetricFamily("relay_seconds", "Relay latency."))
    latency.add([], relay.buckets(), relay.total)
    their_latency.add_metric([], relay.buckets(), relay.total)
    ours += [ready, latency]
    theirs += [their_ready, their_latency]
    return ours, theirs


def test_the_text_is_prometheus_clients_byte_for_byte():
    """
    Counters (with labels and without), gauges, infos and histograms, with
    label values and help needing escapes and every float form: our text is
    the bytes ``prometheus_client.generate_latest`` makes of the same figures.
    """
    ours, theirs = both()
    text = render(ours)
    assert text == generate_latest(_Collected(theirs))
    lines = text.decode().splitlines()
    assert "# TYPE jobs_started_total counter" in lines
    assert "proactor_info{version=\"1.2.3\"} 1.0" in lines
    assert 'relay_seconds_bucket{le="+Inf"} 5.0' in lines
    assert len(list(text_string_to_metric_families(text.decode()))) == len(ours)


def test_the_content_type_is_prometheus_clients():
    """We serve the content type ``prometheus_client`` serves with this text."""
    assert CONTENT_TYPE == CONTENT_TYPE_LATEST


@pytest.mark.parametrize("value, text", [
    (0, "0.0"), (1, "1.0"), (0.5, "0.5"), (1e-05, "1e-05"), (2.5e-05, "2.5e-05"),
    (999999, "999999.0"), (10**6, "1e+06"), (1234567, "1.234567e+06"),
    (1e16, "1e+16"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (float("nan"), "NaN"),
    (-1234567.0, "-1234567.0"),
])
def test_floats_are_written_as_go_writes_them(value, text):
    """Go's forms: an exponent from a million up, ``+Inf``, ``NaN``; Python's repr below."""
    assert go_float(value) == text


@pytest.mark.parametrize("make", [
    lambda: GaugeFamily("no-dash", "x"),
    lambda: GaugeFamily("ok", "x", labels=["le-bad"]),
    lambda: GaugeFamily("ok", "x", labels=["__reserved"]),
    lambda: GaugeFamily("ok", "x", labels=["a"]).add(["1", "2"], 1),
    lambda: InfoFamily("ok", "x").add([], {"bad key": "v"}),
    lambda: HistogramFamily("ok", "x").add([], [("1.0", 1)], 1.0),
])
def test_a_bad_name_or_sample_is_refused_by_name(make):
    """A name outside Prometheus's character set, label values that do not fit the
    label names, buckets without +Inf: ValueError, naming what is wrong."""
    with pytest.raises(ValueError, match=r"not a Prometheus|label values|buckets"):
        make()
