"""
A fault worker that fails at once: it prints its reason to stderr and
exits 1 without reading its config or listening.

``python -P -m turberfield_twisted.testing.crash --guid G --port P``
"""

import sys

REASON = "crash: this worker always fails at start"

if __name__ == "__main__":
    sys.stderr.write(f"{REASON}\n")
    sys.stderr.flush()
    raise SystemExit(1)
