"""
The benchmarks' ports come from the testing kit's ``free_ports``, held under
its lock files for the whole run (``benchmarks/bench_ports.py``), never from
fixed numbers: a bench run beside ``make test`` (or beside another bench)
then never binds a port a test holds.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from turberfield_twisted.testing.ports import DEFAULT_WINDOW, NoFreeRange, free_ports

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
NUMBER = re.compile(r"(?<![\d.])\d{5}(?![\d.])")


@pytest.fixture
def benchmarks(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``benchmarks/`` first on the path; the modules imported from it go after."""
    monkeypatch.setattr(sys, "path", [str(BENCHMARKS), *sys.path])
    yield
    for name, module in list(sys.modules.items()):
        if Path(getattr(module, "__file__", None) or "/").parent == BENCHMARKS:
            del sys.modules[name]


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of ``tree``'s module, classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_no_benchmark_names_a_port_of_the_kits_window() -> None:
    """
    No benchmark script has a number of the kit's window (20000-32767) in its
    code, as an int or inside a string (its docstrings may say the window).
    """
    low, high = DEFAULT_WINDOW
    found = []
    scripts = sorted(BENCHMARKS.glob("*.py"))
    assert len(scripts) > 10
    for script in scripts:
        tree = ast.parse(script.read_text(), str(script))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or id(node) in skip:
                continue
            if isinstance(node.value, int) and not isinstance(node.value, bool):
                numbers = [node.value]
            elif isinstance(node.value, str):
                numbers = [int(text) for text in NUMBER.findall(node.value)]
            else:
                continue
            found += [f"{script.name}:{node.lineno}: {n}" for n in numbers if low <= n <= high]
    assert found == []


def test_a_benchs_ports_are_a_held_free_ports_range_cut_into_named_parts(
        benchmarks: None) -> None:
    """
    bench_ports holds one free_ports range, cut in order into the parts asked
    for; while it is held, free_ports hands none of it to anyone else.
    """
    from bench_ports import bench_ports

    with bench_ports(api=1, workers=25, control=2) as ports:
        assert [(name, len(part)) for name, part in ports.parts.items()] == [
            ("api", 1), ("workers", 25), ("control", 2)]
        assert ports.port("api") == ports.held.low
        assert ports["workers"].start == ports.port("api") + 1
        assert ports["control"].start == ports["workers"].stop
        assert ports["control"][-1] <= ports.held.high
        with pytest.raises(NoFreeRange):
            free_ports(1, window=(ports.held.low, ports.held.high))


def test_bench_ports_refuses_an_empty_part(benchmarks: None) -> None:
    """A part of no ports is a mistake in the layout: refused before any port is held."""
    from bench_ports import bench_ports

    with pytest.raises(ValueError, match="at least one port"):
        bench_ports(api=1, workers=0)


def test_benchs_layout_serves_its_largest_fan_out(benchmarks: None) -> None:
    """
    bench.py's parts give the largest --fanout a port each, for the peers and for
    this daemon started with its workers declared; the services rows get theirs.
    """
    import bench  # benchmarks/bench.py
    from service_rows import SERVICE_PORTS

    largest = 100
    bench.parse_args(["--fanout", str(largest)])
    with pytest.raises(SystemExit):
        bench.parse_args(["--fanout", str(largest + 1)])
    assert bench.PORTS["peers"] >= largest and bench.PORTS["declared"] >= largest
    assert bench.PORTS["services"] == SERVICE_PORTS
