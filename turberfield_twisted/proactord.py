"""
``proactord``: ``twistd`` for the proactor alone, lighter.

``proactord [twistd options] proactor [options]`` runs what ``twistd
[twistd options] proactor [options]`` runs (the same options, service and
exit status), with two differences, both for a daemon's own weight:

- The standard library's TLS (``ssl``, ``_ssl``, ``_hashlib``: OpenSSL's
  libssl and libcrypto) is kept out of the process before Twisted is
  imported (:func:`~turberfield_twisted.tlsgate.keep_out_stdlib_tls`):
  ``twistd`` loads it at its first import and never uses it. The daemon's
  TLS, when its config asks for it, is pyOpenSSL's, as under ``twistd``.
- It knows one plugin, ``proactor``, and does not scan ``twisted.plugins``
  for the others (each of which ``twistd`` imports, with what they import).

Measured side by side (benchmarks/cold_start.py, 100 declared jobs): 5.3 MiB
less RSS than ``twistd proactor``, and a shorter start.
"""

from __future__ import annotations

from collections.abc import Iterator

from turberfield_twisted.tlsgate import keep_out_stdlib_tls

__all__ = ["main"]


def main() -> None:
    """Run the proactor daemon as ``twistd`` would, with the standard library's TLS kept out."""
    keep_out_stdlib_tls()  # before anything imports Twisted

    from twisted.application import app
    from twisted.application.service import IServiceMaker
    from twisted.scripts import twistd

    from twisted.plugins.turberfield_proactor import proactor

    class ProactorOnly(twistd.ServerOptions):
        """twistd's options, with ``proactor`` its one sub-command (no plugin scan)."""

        synopsis = "Usage: proactord [twistd options] proactor [options]"

        @property
        def subCommands(self) -> Iterator[tuple[str, None, object, str]]:
            maker: IServiceMaker = proactor
            self.loadedPlugins = {maker.tapname: maker}
            yield (maker.tapname, None, maker.options, maker.description)

    app.run(twistd.runApp, ProactorOnly)


if __name__ == "__main__":
    main()
