"""
The dashboard's files under /ui/ (served from a fixed table, with a strict
Content-Security-Policy), what they may and may not contain, and GET /modules,
the route its launch form reads. The page itself, in a real browser against a
real daemon: tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq

from turberfield_twisted import Initiator, LocalLauncher
from turberfield_twisted.dashboard import FILES, HEADERS, POLICY, Dashboard
from turberfield_twisted.http import openapi
from turberfield_twisted.http.api import ControlAPI, served_routes
from turberfield_twisted.testing.configs import DEMO, initiator_config
from turberfield_twisted.testing.fakes import FakeProcessReactor

TOKEN = "admin-token-for-the-dashboard-0123456789"
BASE = "http://127.0.0.1"
HERE = Path(str(resources.files("turberfield_twisted.dashboard")))
ROOT = Path(__file__).resolve().parent.parent


def api(modules: dict[str, dict[str, Any]] | None = None) -> StubTreq:
    """A control API over memory, on an initiator that never starts a process."""
    reactor = FakeProcessReactor()
    cfg = initiator_config(26700, 26709, modules=modules)
    launcher = LocalLauncher(reactor, python="/py", setsid=None, process_groups=False)
    init = Initiator(None, guid="init", cfg=cfg, reactor=reactor, launcher=launcher)
    return StubTreq(ControlAPI(init, TOKEN, reactor).app.resource())


async def get(http: StubTreq, path: str, method: str = "GET", token: str | None = None,
              ) -> tuple[Any, bytes]:
    headers = {} if token is None else {b"Authorization": [b"Bearer " + token.encode()]}
    response = await http.request(method, BASE + path, headers=headers, timeout=5,
                                  allow_redirects=False)
    return response, await response.content()


def header(response: Any, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[-1] if values else None


# -- the files, as served --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_each_file_is_served_with_its_type_and_the_security_headers():
    """Every file of the table, with its content type, CSP, nosniff and no referrer; no token."""
    http = api()
    for name, content_type in FILES.items():
        response, body = await get(http, f"/ui/{name}")
        assert response.code == 200, name
        assert header(response, "Content-Type") == content_type
        assert body == (HERE / name).read_bytes()
        for key, value in HEADERS.items():
            assert header(response, key) == value, (name, key)
    assert "script-src 'self';" in POLICY and "'unsafe-inline'" not in POLICY
    assert "frame-ancestors 'none'" in POLICY and "connect-src 'self'" in POLICY


@pytest_twisted.ensureDeferred
async def test_the_way_in_leads_to_the_page():
    """GET / and GET /ui go to /ui/, which is index.html."""
    http = api()
    for path in ("/", "/ui"):
        response, _ = await get(http, path)
        assert (response.code, header(response, "Location")) == (302, "/ui/"), path
        assert header(response, "Content-Security-Policy") == POLICY
    response, body = await get(http, "/ui/")
    assert response.code == 200
    assert header(response, "Content-Type") == FILES["index.html"]
    assert body == (HERE / "index.html").read_bytes()


@pytest_twisted.ensureDeferred
async def test_nothing_else_is_served_and_nothing_but_get():
    """A name not in the table (the package's Python, a path up) is a 404; POST is a 405."""
    http = api()
    for path in ("/ui/__init__.py", "/ui/../api.py", "/ui/..%2f__init__.py", "/ui/x/app.js",
                 "/ui/app.js/", "/ui/APP.JS", "/ui/%00"):
        response, body = await get(http, path)
        assert response.code == 404, path
        assert b"import" not in body
    response, body = await get(http, "/ui/app.js", method="POST", token=TOKEN)
    assert response.code == 405
    assert json.loads(body) == {"error": "method not allowed"}


def test_a_dashboard_without_a_file_of_its_table_is_refused():
    """A broken install (a file missing) fails at start, not on a visit."""
    files = {name: b"" for name in FILES if name != "app.js"}
    with pytest.raises(ValueError, match=r"app\.js"):
        Dashboard(files)


# -- what the files may hold ----------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self.tags and data.strip():
            self.data.append((self.tags[-1][0], data))


def test_the_page_has_no_inline_script_or_style():
    """index.html: scripts and styles by file only, no handler attributes (the CSP forbids them)."""
    page = _Tags()
    page.feed((HERE / "index.html").read_text())
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts == [{"type": "module", "src": "app.js"}]
    assert not [tag for tag, _ in page.tags if tag == "style"]
    assert not [data for tag, data in page.data if tag in ("script", "style")]
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag
    links = {attrs.get("href") for tag, attrs in page.tags if tag == "link"}
    assert links == {"app.css", "data:,"}


#: What would put text into the page as HTML, or run text as code.
_AS_HTML = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|"
                      r"new Function|createContextualFragment|DOMParser|srcdoc|setHTML")


def test_the_scripts_set_text_never_html_and_fetch_nothing_from_elsewhere():
    """
    No script builds HTML from strings or runs strings as code; the scripts
    import only each other; no file names another host.
    """
    for name in FILES:
        text = (HERE / name).read_text()
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text.replace(
            "http://127.0.0.1:9000/hook", "")), name  # a placeholder: the only URL
        if name.endswith(".js"):
            assert not _AS_HTML.search(text), name
            for module in re.findall(r'from\s+"([^"]+)"', text):
                assert module.startswith("./") and module[2:] in FILES, (name, module)
    api_js = (HERE / "api.js").read_text()
    assert "sessionStorage" in api_js and "localStorage" not in api_js
    assert 'credentials: "omit"' in api_js and "document.cookie" not in api_js


def test_the_table_names_every_file_and_the_package_data_ships_them():
    """Each page file is in FILES (and so served), and pyproject puts it in the wheel."""
    on_disk = {path.name for path in HERE.iterdir() if path.suffix in (".html", ".css", ".js")}
    assert on_disk == set(FILES)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert "turberfield_twisted.dashboard" in setuptools["packages"]
    patterns = setuptools["package-data"]["turberfield_twisted.dashboard"]
    for name in FILES:
        assert any(fnmatch(name, pattern) for pattern in patterns), name


# -- GET /modules -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_modules_lists_what_a_launch_may_name_and_override():
    """Each module, its overridable keys and their defaults (no secret), launcher, warm."""
    http = api(modules={
        DEMO: {"greeting": "hello", "overridable": "greeting"},
        "some.other": {"secret": "s3cr3t-value", "colour": "blue", "size": "3",
                       "overridable": "colour secret", "warm": "true"},
    })
    response, body = await get(http, "/modules")
    assert response.code == 401
    response, body = await get(http, "/modules", token=TOKEN)
    assert response.code == 200
    assert header(response, "Content-Type") == "application/json"
    assert json.loads(body) == {"modules": [
        {"name": "some.other", "overridable": ["colour", "secret"],
         "defaults": {"colour": "blue"}, "launcher": "local", "warm": True},
        {"name": DEMO, "overridable": ["greeting"], "defaults": {"greeting": "hello"},
         "launcher": "local", "warm": False},
    ]}
    assert b"s3cr3t" not in body


def test_the_description_has_modules_and_the_way_in_but_not_the_files():
    """GET /modules and GET / are described; /ui/ is a page, not part of the JSON API."""
    document = openapi.document(served_routes())
    paths = document["paths"]
    assert paths["/modules"]["get"]["security"] == [{"token": ["viewer"]}]
    assert "302" in paths["/"]["get"]["responses"]
    assert not [path for path in paths if path.startswith("/ui")]
