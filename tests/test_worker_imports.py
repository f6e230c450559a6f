"""
What a worker process loads. The worker runtime, the demo and the fault
workers import none of the daemon's modules, and neither treq nor
``twisted.web.client`` until the app first calls its initiator through
``ctx.parent``. Each check runs a fresh ``python -P``, as a launched job is.
"""

import json
import subprocess
import sys

import pytest

#: Every turberfield_twisted module the worker runtime loads, and no other.
WORKER_SIDE = {
    "turberfield_twisted",
    "turberfield_twisted.configtext",
    "turberfield_twisted.contract",
    "turberfield_twisted.errors",
    "turberfield_twisted.worker",
    "turberfield_twisted.worker._asyncio",
    "turberfield_twisted.worker.app",
    "turberfield_twisted.worker.drain",
    "turberfield_twisted.worker.group",
    "turberfield_twisted.worker.parent",
    "turberfield_twisted.worker.proactor",
    "turberfield_twisted.worker.runtime",
    "turberfield_twisted.worker.sockets",
    "turberfield_twisted.worker.stdin",
    "turberfield_twisted.worker.upkeep",
}
HTTP_CLIENT = ["treq", "twisted.web.client"]

#: Prints what a fresh interpreter loaded: our modules, then HTTP client modules.
REPORT = """
import json, sys
print(json.dumps([
    sorted(m for m in sys.modules if m.split(".")[0] == "turberfield_twisted"),
    sorted(m for m in sys.modules if m in {http!r}),
]))
"""


def loaded(code: str) -> tuple[set[str], list[str]]:
    """Run ``code`` in ``python -P`` and return what it loaded, as :data:`REPORT` says."""
    script = code + REPORT.format(http=set(HTTP_CLIENT))
    done = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    ours, http = json.loads(done.stdout.splitlines()[-1])
    return set(ours), http


@pytest.mark.parametrize(("module", "extra"), [
    ("turberfield_twisted.worker.runtime", set()),
    ("turberfield_twisted.demo.hello",
     {"turberfield_twisted.demo", "turberfield_twisted.demo.hello"}),
    ("turberfield_twisted.testing.flood",
     {"turberfield_twisted.testing", "turberfield_twisted.testing.flood"}),
    ("turberfield_twisted.testing.hang",
     {"turberfield_twisted.testing", "turberfield_twisted.testing.hang"}),
    ("turberfield_twisted.testing.spawner",
     {"turberfield_twisted.testing", "turberfield_twisted.testing.spawner"}),
    ("turberfield_twisted.testing.slow",
     {"turberfield_twisted.testing", "turberfield_twisted.testing.slow"}),
    ("turberfield_twisted.testing.hog",
     {"turberfield_twisted.testing", "turberfield_twisted.testing.hog"}),
    ("turberfield_twisted.testing.gated",
     {"turberfield_twisted.testing", "turberfield_twisted.testing.gated"}),
])
def test_a_worker_module_loads_only_the_worker_side(module, extra):
    """Importing a worker module loads the runtime's own modules and no HTTP client."""
    ours, http = loaded(f"import {module}\n")
    assert ours == WORKER_SIDE | extra
    assert http == []


def test_the_worker_package_loads_its_runtime_when_asked_for_it():
    """Importing the worker package loads no reactor; taking ``Klein`` from it loads the runtime."""
    ours, _ = loaded("import sys, turberfield_twisted.worker\n"
                     "assert 'twisted.internet.reactor' not in sys.modules\n")
    assert ours == {"turberfield_twisted", "turberfield_twisted.worker",
                    "turberfield_twisted.contract", "turberfield_twisted.errors"}
    ours, http = loaded("from turberfield_twisted.worker import Klein\n"
                        "from twisted.internet import reactor, asyncioreactor\n"
                        "assert isinstance(reactor, asyncioreactor.AsyncioSelectorReactor)\n")
    assert ours == WORKER_SIDE
    assert http == []


def test_the_deaf_worker_loads_only_the_contract():
    """The deaf fault worker needs the lifeline's fd and nothing else of ours."""
    ours, http = loaded("import turberfield_twisted.testing.deaf\n")
    assert ours == {"turberfield_twisted", "turberfield_twisted.contract",
                    "turberfield_twisted.testing", "turberfield_twisted.testing.deaf"}
    assert http == []


def test_ctx_parent_loads_treq_on_first_use_only():
    """The runtime builds ctx.parent without treq; its first use of ``http`` loads it."""
    ours, http = loaded("""
import argparse
import sys
from turberfield_twisted.configtext import parse_config
from turberfield_twisted.worker.runtime import _Runtime
from twisted.internet import reactor

runtime = _Runtime(reactor, argparse.Namespace(guid="g", port=1), None, 1)
parent = runtime._parent_client(parse_config("[g]\\nparent_port = 8080\\n"), "t")
assert parent is not None and parent.url == "http://127.0.0.1:8080", parent
assert not {"treq", "twisted.web.client"} & set(sys.modules), "loaded too soon"
parent.http
""")
    assert ours == WORKER_SIDE | {"turberfield_twisted.worker.agent",
                                  "turberfield_twisted.worker.endpoint",
                                  "turberfield_twisted.tlsgate"}
    assert http == HTTP_CLIENT


#: Imports the runtime after what comes before it, counting the collector's passes meanwhile.
COLLECTIONS = """
import compileall, gc, importlib.util, json
import turberfield_twisted.worker, turberfield_twisted.errors, turberfield_twisted.contract
# Compiled first (a fresh clone has no .pyc): compiling it is no part of its import's work.
compileall.compile_file(importlib.util.find_spec("turberfield_twisted.worker.runtime").origin,
                        quiet=2)
passes = []
gc.callbacks.append(lambda phase, info: passes.append(info) if phase == "start" else None)
import turberfield_twisted.worker.runtime
print(json.dumps([len(passes), gc.isenabled(), gc.get_count()[0], gc.get_freeze_count()]))
"""


def test_importing_the_runtime_runs_no_collection_and_freezes_what_it_made():
    """
    Klein, Twisted and the asyncio reactor load with the collector off (its
    passes over their growing objects were some 50 ms of a cold start); after,
    the collector is on again with what they made frozen, so its next pass is
    not one over all of it.
    """
    done = subprocess.run([sys.executable, "-P", "-c", COLLECTIONS], capture_output=True,
                          text=True, timeout=60, check=True)
    passes, enabled, young, frozen = json.loads(done.stdout)
    assert (passes, enabled) == (0, True)
    assert young < 100 and frozen > 50_000
