"""
The dashboard in a real browser: the distribution's headless Chromium, driven
by Selenium through the distribution's chromedriver (never a driver or browser
that Selenium Manager would fetch), against a real daemon with real workers.

Skipped, with the reason, where Chromium is not installed (.ci/run installs it,
so CI runs these). Each test writes screenshots to a folder it names in its
failure messages (``$DASHBOARD_SCREENSHOTS`` if set, else under its tmp_path).
Selenium blocks, so each browser step runs in a thread while the reactor goes
on serving the daemon's pipes; every wait is a bounded WebDriverWait on what
the page shows.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from _system import absent
from twisted.internet import threads

from turberfield_twisted.testing.configs import DEMO
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.subscriber import Subscriber, listen

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = Path(os.environ.get("DASHBOARD_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("DASHBOARD_CHROMEDRIVER", "/usr/bin/chromedriver"))
#: Without the networking flags, Chromium's own background connections are refused here.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", "--window-size=1280,900")
XSS = "<img src=x onerror=alert(1)>"

_MISSING = f"no {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver"
_PRESENT = CHROMIUM.exists() and CHROMEDRIVER.exists()


class Browser:
    """One headless Chromium: steps run in a thread; waits are bounded; screenshots kept."""

    def __init__(self, driver: Any, reactor: Any, shots: Path):
        self.driver = driver
        self.reactor = reactor
        self.shots = shots
        self.taken = 0

    async def do(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run ``step(*args)`` (blocking Selenium calls) in a thread."""
        return await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                               step, *args)

    async def until(self, what: str, condition: Callable[[Any], Any],
                    timeout: float = 30) -> Any:
        """Wait (at most ``timeout`` s) until ``condition(driver)`` is truthy: its value."""
        def wait() -> Any:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1, ignored_exceptions=(
                NoSuchElementException, StaleElementReferenceException)).until(condition)
        try:
            return await self.do(wait)
        except TimeoutException:
            shot = await self.shot("timeout")
            raise AssertionError(f"not within {timeout} s: {what}; the page: {shot}") from None

    async def shot(self, name: str) -> Path:
        """Save a screenshot as ``NN-name.png`` in the test's folder; its path."""
        self.taken += 1
        path = self.shots / f"{self.taken:02d}-{name}.png"
        await self.do(self.driver.save_screenshot, str(path))
        return path

    async def click(self, css: str) -> None:
        await self.do(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def type(self, css: str, text: str, clear: bool = True) -> None:
        def typing() -> None:
            field = self.driver.find_element(By.CSS_SELECTOR, css)
            if clear:
                field.clear()
            field.send_keys(text)
        await self.do(typing)

    async def select(self, css: str, value: str) -> None:
        await self.do(lambda: Select(self.driver.find_element(By.CSS_SELECTOR, css))
                      .select_by_value(value))

    async def run(self, script: str, *args: Any) -> Any:
        return await self.do(self.driver.execute_script, script, *args)

    async def log_in(self, url: str, token: str) -> None:
        await self.do(self.driver.get, url + "/")  # GET / leads to /ui/
        await self.until("the login form", lambda d: d.find_element(By.ID, "token").is_displayed())
        await self.type("#token", token)
        await self.click("#login-submit")
        await self.until("the jobs page, logged in",
                         lambda d: d.find_element(By.ID, "status").text == "live"
                         and d.find_elements(By.CSS_SELECTOR, "#jobs"))

    def no_dialog(self) -> bool:
        try:
            self.driver.switch_to.alert  # noqa: B018 - it raises if there is none
        except NoAlertPresentException:
            return True
        return False

    def trouble(self) -> list[str]:
        """What the browser's console says of script errors or CSP violations."""
        return [entry["message"] for entry in self.driver.get_log("browser")
                if "Content Security Policy" in entry["message"]
                or "Uncaught" in entry["message"]]


@pytest.fixture
def ports() -> Any:
    with free_ports(20) as held:
        yield held


@pytest.fixture
def browser(reactor: Any, tmp_path: Path, monkeypatch: Any, take_ports: Any) -> Any:
    """
    A fresh headless Chromium through /usr/bin/chromedriver (the driver and the
    browser's DevTools on ports from free_ports); quit after the test.
    """
    if not _PRESENT:  # skipped elsewhere; under .ci/run, which installs them, a failure
        absent(_MISSING)
    # Selenium Manager is never asked (the driver's path is given), and if it were, it
    # would fail here rather than download a driver or a browser.
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_MANAGER_PATH", str(tmp_path / "no-selenium-manager"))
    shots = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_port, devtools_port = take_ports(2).ports[:2]
    options.add_argument(f"--remote-debugging-port={devtools_port}")
    # A path given to the Service: Selenium Manager is not asked for a driver.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), port=driver_port),
                              options=options)
    try:
        yield Browser(driver, reactor, shots)
    finally:
        driver.quit()


async def api(reactor: Any, daemon: Any, method: str, path: str, body: Any = None) -> Any:
    """A call to the daemon's control API with its admin token: the JSON answer."""
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await treq.request(method, daemon.url + path, headers=daemon.headers(),
                                  data=data, timeout=10, reactor=reactor)
    content = await response.content()
    assert response.code < 300, (method, path, response.code, content)
    return json.loads(content) if content else None


def row(guid: str) -> str:
    return f'#jobs tbody tr[data-guid="{guid}"]'


_ROWS = """
return [...document.querySelectorAll('#jobs tbody tr')].map((tr) => ({
  guid: tr.dataset.guid, session: tr.querySelector('td.session').textContent,
  state: tr.querySelector('td.state .badge')?.textContent ?? '',
  trail: (tr.querySelector('td.state .trail')?.textContent ?? '').split(' → '),
  restarts: tr.querySelector('td.restarts').textContent, shown: tr.checkVisibility()}));
"""


def rows(driver: Any) -> dict[str, dict[str, Any]]:
    """The jobs table as the page shows it, read at one moment: guid to its cells."""
    return {one["guid"]: one for one in driver.execute_script(_ROWS)}


@pytest_twisted.ensureDeferred
async def test_the_jobs_page_follows_real_workers_live(daemons, ports, browser, reactor):
    """
    Log in (a wrong token is refused), launch three jobs with the form and see
    them ready; SIGKILL one and see it go through backoff to ready without a
    reload; stop one with its button; filter by state; on a job's page see a
    line its worker printed, and a printed ``<img onerror>`` shown as text,
    running nothing. The token is in sessionStorage only: no cookie, no URL.
    """
    daemon = await daemons(ports.low, ports.high)
    b = browser
    await b.do(b.driver.get, daemon.url + "/ui/")
    await b.until("the login form", lambda d: d.find_element(By.ID, "token").is_displayed())
    await b.type("#token", "not-the-token")
    await b.click("#login-submit")
    await b.until("a wrong token refused",
                  lambda d: "refused" in d.find_element(By.ID, "login-error").text)
    await b.log_in(daemon.url, daemon.token)
    await b.run("window.notReloaded = true")

    for session in ("s1", "s2", "s3"):
        await b.type("#launch-session", session)
        await b.type("#override-greeting", f"hello {session}")
        await b.click("#launch-submit")
        await b.until(f"job {session} launched", lambda d, s=session: [
            one for one in rows(d).values() if one["session"] == s])

    def all_ready(driver: Any) -> dict[str, str] | None:
        seen = {one["session"]: guid for guid, one in rows(driver).items()
                if one["state"] == "ready"}
        return seen if len(seen) == 3 else None

    guids = await b.until("three jobs ready", all_ready)
    await b.shot("three-ready")
    jobs = {job["guid"]: job for job in (await api(reactor, daemon, "GET", "/jobs"))["jobs"]}
    assert {jobs[guid]["session"] for guid in guids.values()} == {"s1", "s2", "s3"}
    assert jobs[guids["s1"]]["config"] == {"greeting": "hello s1"}

    killed, stopped, shown = guids["s1"], guids["s2"], guids["s3"]
    os.kill(jobs[killed]["pid"], signal.SIGKILL)

    def back_through_backoff(driver: Any) -> bool:
        one = rows(driver)[killed]
        states = one["trail"]
        return (one["state"] == "ready" and "backoff" in states
                and states.index("backoff") < len(states) - 1 and one["restarts"] == "1")

    await b.until("the killed job through backoff to ready, restarted once",
                  back_through_backoff)
    await b.click(f'{row(stopped)} button[data-action="stop"]')
    await b.until("the stopped job exited", lambda d: rows(d)[stopped]["state"] == "exited")
    await b.select("#filter-state", "ready")
    await b.until("only the two ready jobs shown", lambda d: sorted(
        guid for guid, one in rows(d).items() if one["shown"]) == sorted([killed, shown]))
    await b.select("#filter-state", "")
    shot = await b.shot("jobs")
    assert await b.run("return window.notReloaded === true"), f"the page reloaded: {shot}"

    await api(reactor, daemon, "POST", f"/jobs/{shown}/proxy/say", b"printed before the visit")
    await b.click(f"{row(shown)} a.guid")

    def output(driver: Any) -> list[str]:
        return [line.text for line in driver.find_elements(By.CSS_SELECTOR, "#output .text")]

    await b.until("the line printed before the visit", lambda d: "printed before the visit"
                  in output(d))
    await b.until("the job's record", lambda d: d.find_element(
        By.CSS_SELECTOR, '#record dd[data-field="guid"]').text == shown)
    await api(reactor, daemon, "POST", f"/jobs/{shown}/proxy/say", XSS.encode())
    await b.until("the printed <img> line, live, as text", lambda d: XSS in output(d))
    shot = await b.shot("job")
    assert await b.do(b.no_dialog), f"a dialog opened: {shot}"
    assert await b.run("return document.querySelectorAll('img').length") == 0, shot
    assert await b.run("return window.notReloaded === true"), f"the page reloaded: {shot}"
    assert await b.do(b.driver.get_cookies) == []
    assert daemon.token not in await b.do(lambda: b.driver.current_url)
    assert await b.run("return sessionStorage.getItem('proactor-admin-token')") == daemon.token
    assert await b.do(b.trouble) == [], shot


@pytest_twisted.ensureDeferred
async def test_a_live_config_change_and_web_hooks_from_the_browser(daemons, ports, browser,
                                                                    reactor):
    """
    A job's page changes its greeting live (the worker has it) and shows the
    worker's reason when it refuses one; a session and a config value that
    look like HTML show as text; the hooks page subscribes a URL (its secret
    shown once), counts a delivery, and removes it.
    """
    daemon = await daemons(ports.low, ports.high - 1)
    subscriber = Subscriber()
    receiving = await listen(reactor, subscriber, ports.high)
    b = browser
    try:
        job = await api(reactor, daemon, "POST", "/jobs", {"module": DEMO, "session": XSS})
        guid = job["guid"]
        await api(reactor, daemon, "GET", f"/jobs/{guid}?wait=ready&timeout=30")
        await b.log_in(daemon.url, daemon.token)
        await b.do(b.driver.get, f"{daemon.url}/ui/#/jobs/{guid}")  # the token stays in the tab
        await b.until("the job's page", lambda d: d.find_elements(By.ID, "config-form"))
        await b.type("#change-greeting", XSS)
        await b.click("#config-submit")

        def greeting(driver: Any) -> list[str]:
            return [cell.text for cell in driver.find_elements(
                By.CSS_SELECTOR, '#config tr[data-key="greeting"] td')]

        await b.until("the greeting changed", lambda d: greeting(d) == ["greeting", XSS,
                                                                        "this job"])
        worker = await api(reactor, daemon, "GET", f"/jobs/{guid}/proxy/")
        assert worker["config"]["greeting"] == XSS
        assert await b.do(lambda: b.driver.find_element(
            By.CSS_SELECTOR, '#record dd[data-field="session"]').text) == XSS
        await b.type("#change-greeting", "x" * 81)
        await b.click("#config-submit")
        refused = await b.until("the refusal and its reason", lambda d: [
            text for text in [d.find_element(By.ID, "config-notice").text]
            if "greeting must be 1 to 80 characters" in text])
        assert refused[0].startswith("Refused, nothing was changed:")
        await b.shot("job-config-refused")
        assert greeting(b.driver) == ["greeting", XSS, "this job"]
        assert await b.do(b.no_dialog)
        assert await b.run("return document.querySelectorAll('img').length") == 0

        await b.click('nav a[data-page="hooks"]')
        url = f"http://127.0.0.1:{ports.high}/hook"
        await b.until("the hooks page", lambda d: d.find_elements(By.ID, "hook-form"))
        await b.type("#hook-url", url)
        await b.click("#hook-submit")
        secret = await b.until("the new hook's secret", lambda d: [
            e.text for e in d.find_elements(By.CSS_SELECTOR, "#hook-added .secret") if e.text])
        hooks = (await api(reactor, daemon, "GET", "/hooks"))["hooks"]
        assert [hook["url"] for hook in hooks] == [url]
        assert secret[0] not in json.dumps(hooks)
        await api(reactor, daemon, "POST", f"/jobs/{guid}/restart")
        await subscriber.arrived(1).addTimeout(30, reactor)
        hook = f'#hooks tr[data-hook="{hooks[0]["id"]}"]'
        await b.until("a delivery counted", lambda d: d.find_element(
            By.CSS_SELECTOR, f"{hook} td.delivered").text not in ("", "0"))
        await b.shot("hooks")
        await b.click(f'{hook} button[data-action="remove"]')
        await b.until("the hook removed", lambda d: not d.find_elements(By.CSS_SELECTOR, hook))
        assert (await api(reactor, daemon, "GET", "/hooks"))["hooks"] == []
        assert await b.do(b.trouble) == []
    finally:
        await receiving.down()


_PARSE = """
const done = arguments[arguments.length - 1];
import("./stream.js").then(({ SseParser }) => {
  const frames = [];
  const parser = new SseParser((frame) => frames.push(frame));
  const text = arguments[0];
  for (const char of text) parser.feed(char);  // split everywhere, \\r\\n too
  done(frames);
}, (error) => done(String(error)));
"""

_RESUME = """
const [guid, done] = [arguments[0], arguments[arguments.length - 1]];
import("./stream.js").then(({ EventStream }) => {
  const first = new EventStream({ onEvent: (name, data) => {
    if (name !== "open") return;
    first.stop();
    const run = data.last.split("-")[0];
    const seen = [];
    const again = new EventStream({ lastId: `${run}-0`, onEvent: (name, data, id) => {
      seen.push([name, data && data.guid === guid ? data.event : null, id]);
      if (name === "state" && data.guid === guid && data.event === "ready") {
        again.stop();
        done({ seen, lastId: again.lastId });
      }
    } });
    again.start();
  } });
  first.start();
}, (error) => done(String(error)));
"""


@pytest_twisted.ensureDeferred
async def test_the_page_reads_server_sent_events_itself_and_resumes(daemons, ports, browser,
                                                                  reactor):
    """
    The page's own SSE reader (fetch and a stream reader: EventSource can't send
    the bearer header) splits frames wherever the bytes break, and a stream
    opened with Last-Event-ID (as it reopens after a drop) gets what came after
    that id, in order, from the real daemon.
    """
    daemon = await daemons(ports.low, ports.high)
    b = browser
    await b.log_in(daemon.url, daemon.token)
    text = ("id: 0a1b2c3d-7\r\nevent: state\r\ndata: {\"guid\": \"g\"}\r\n\r\n"
            ": keepalive\n\nevent: log\ndata: one\ndata: two\n\nevent: open\ndata: {}\n\n")
    frames = await b.do(b.driver.execute_async_script, _PARSE, text)
    assert frames == [
        {"event": "state", "data": '{"guid": "g"}', "id": "0a1b2c3d-7"},
        {"event": "log", "data": "one\ntwo", "id": None},
        {"event": "open", "data": "{}", "id": None},
    ]
    job = await api(reactor, daemon, "POST", "/jobs", {"module": DEMO})
    await api(reactor, daemon, "GET", f"/jobs/{job['guid']}?wait=ready&timeout=30")
    await b.do(b.driver.set_script_timeout, 30)
    got = await b.do(b.driver.execute_async_script, _RESUME, job["guid"])
    assert isinstance(got, dict), got
    mine = [event for name, event, _ in got["seen"] if name == "state" and event]
    assert mine[0] in ("waiting", "starting") and mine[-1] == "ready", got
    numbers = [int(id.split("-")[1]) for _, _, id in got["seen"] if id]
    assert numbers == sorted(numbers) and numbers[0] == 1, got
    assert got["seen"][0][0] == "open"
    assert got["lastId"] == got["seen"][-1][2]  # where it would resume from
    assert await b.do(b.trouble) == []


def _service_cell(name: str, cell: str) -> Callable[[Any], str]:
    """What the services page shows of service ``name`` in its ``cell`` (a class)."""
    return lambda d: d.find_element(
        By.CSS_SELECTOR, f'section[data-service="{name}"] .{cell}').text


@pytest_twisted.ensureDeferred
async def test_the_services_page_scales_rolls_out_and_says_why_a_rollout_failed(
        daemons, ports, browser, reactor):
    """
    The services page shows a service's address and its instances ready; its scale
    control takes it to 3 and its rollout button replaces all three (progress "done
    3/3"), live from the event stream; a rollout to a module that fails at import shows
    "failed" and the ImportError.
    """
    broken = "turberfield_twisted.testing.broken"
    daemon = await daemons(ports.low, ports.high - 2,
                           extra=f"\n[{broken}]\noverridable = greeting\n")
    listen = f"127.0.0.1:{ports.high}"
    await api(reactor, daemon, "POST", "/services",
              {"name": "web", "module": DEMO, "listen": listen, "instances": 2})
    b = browser
    await b.log_in(daemon.url, daemon.token)
    await b.click('#nav a[data-page="services"]')
    ready, rollout = _service_cell("web", "ready"), _service_cell("web", "rollout-state")
    await b.until("two instances ready", lambda d: ready(d) == "2/2")
    assert await b.do(_service_cell("web", "listen"), b.driver) == listen
    await b.type('section[data-service="web"] input.instances', "3")
    await b.click('section[data-service="web"] button.scale')
    await b.until("three instances ready", lambda d: ready(d) == "3/3")
    await b.click('section[data-service="web"] button.rollout')
    await b.until("the rollout done", lambda d: rollout(d) == "done 3/3", timeout=60)
    shot = await b.shot("services")
    members = await b.run("return [...document.querySelectorAll("
                          "'section[data-service=\"web\"] tbody tr')].map(tr => tr.dataset.guid)")
    assert members == ["web.4", "web.5", "web.6"], shot
    await api(reactor, daemon, "POST", "/services/web/rollout", {"module": broken})
    await b.until("the rollout failed", lambda d: rollout(d).startswith("failed"), timeout=60)
    reason = await b.do(_service_cell("web", "rollout-reason"), b.driver)
    shot = await b.shot("rolled-back")
    assert "ImportError: broken" in reason, shot
    assert await b.do(ready, b.driver) == "3/3", shot
    assert await b.do(b.trouble) == [], shot
