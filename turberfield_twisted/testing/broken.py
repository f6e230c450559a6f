"""
A module that fails at import, as a deploy of broken code does: its worker
exits 1 with the ImportError's traceback on stderr before it serves.

``python -P -m turberfield_twisted.testing.broken --guid G --port P``
"""

raise ImportError("broken: this module fails at import, as a bad deploy does")
