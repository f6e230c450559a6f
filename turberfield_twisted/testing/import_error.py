"""
A fault worker that raises on import, as a module with a broken import or
a bug at module level would.

``python -P -m turberfield_twisted.testing.import_error --guid G --port P``
"""

REASON = "import_error: this module refuses to be imported"

raise RuntimeError(REASON)
