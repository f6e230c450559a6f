"""
The web dashboard: the files of this package, served by the daemon under
``/ui/`` (``/`` and ``/ui`` lead there).

It is a page, not part of the JSON API: the files are plain HTML, CSS and
JavaScript modules (no build step, nothing fetched from elsewhere), read
once from the package and served from a fixed table (:data:`FILES`), so
nothing else under ``/ui/`` is ever reachable. The page logs in with the
admin token, keeps it in the tab's ``sessionStorage`` and sends it as a
bearer header on every call to the API; the files themselves need no
token (they hold no data). Every answer carries :data:`HEADERS`: a strict
Content-Security-Policy (scripts and styles from these files only, no
inline ones, connections only back to the daemon), no sniffing, no
referrer, no framing. The scripts set worker-supplied text (output
lines, errors, config values) as text, never as HTML
(``tests/test_dashboard.py`` checks both, and a real browser checks the
page in ``tests/test_dashboard_browser.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

from twisted.web.iweb import IRequest

__all__ = ["FILES", "HEADERS", "HOME", "Dashboard"]

#: Where the dashboard is.
HOME = b"/ui/"

_HTML = "text/html; charset=utf-8"
_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"

#: Each file the dashboard serves and its content type; nothing else is served.
FILES: Mapping[str, str] = MappingProxyType({
    "index.html": _HTML,
    "app.css": _CSS,
    "app.js": _JS,
    "api.js": _JS,
    "stream.js": _JS,
    "store.js": _JS,
    "dom.js": _JS,
    "format.js": _JS,
    "jobs.js": _JS,
    "launch.js": _JS,
    "job.js": _JS,
    "hooks.js": _JS,
    "services.js": _JS,
})

#: The Content-Security-Policy of every dashboard answer.
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
          " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

#: Headers on every dashboard answer (files, redirects and errors alike).
HEADERS: Mapping[str, str] = MappingProxyType({
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
})


def _read_files() -> dict[str, bytes]:
    here = resources.files(__name__)
    return {name: here.joinpath(name).read_bytes() for name in FILES}


def _secure(request: IRequest) -> None:
    for name, value in HEADERS.items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))


class Dashboard:
    """
    The dashboard's files (``files``: name to content; default: read from
    this package once), answered for a request under ``/ui``.
    """

    def __init__(self, files: Mapping[str, bytes] | None = None):
        self.files = dict(_read_files() if files is None else files)
        missing = sorted(set(FILES) - set(self.files))
        if missing:
            raise ValueError(f"the dashboard lacks files: {missing}")

    def answer(self, request: IRequest) -> bytes:
        """
        The file ``request`` names under ``/ui/`` (``/ui/`` itself:
        ``index.html``), with :data:`HEADERS`; ``/ui`` is sent to ``/ui/``
        (so that the page's relative links resolve), anything else is a 404.
        """
        _secure(request)
        if not request.postpath:
            return self.redirect(request)
        name = b"/".join(request.postpath).decode("utf-8", "replace") or "index.html"
        body = self.files.get(name)
        if body is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"not found\n"
        request.setHeader(b"Content-Type", FILES[name].encode("ascii"))
        return body

    def redirect(self, request: IRequest) -> bytes:
        """Send the browser to the dashboard (302 to ``/ui/``)."""
        _secure(request)
        request.setResponseCode(302)
        request.setHeader(b"Location", HOME)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"the dashboard is at /ui/\n"
