"""
The dashboard over TLS and by role, in the distribution's headless Chromium: it trusts
exactly the test's server key (``--ignore-certificate-errors-spki-list`` with that key's
SPKI hash, so no other certificate error is ignored); a viewer's token logs in and sees
the jobs, but not the launch form nor the stop and restart buttons; an admin's sees them.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

import pytest
import pytest_twisted
import treq
from _pki import make_pki
from _system import absent
from test_dashboard_browser import _MISSING, _PRESENT, CHROMEDRIVER, CHROMIUM, FLAGS, Browser
from twisted.internet.ssl import Certificate
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from turberfield_twisted.contract import bearer_header
from turberfield_twisted.testing.configs import DEMO
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import free_ports

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def shown(driver: Any, css: str) -> bool:
    return any(found.is_displayed() for found in driver.find_elements(By.CSS_SELECTOR, css))


@pytest_twisted.ensureDeferred
async def test_a_viewer_sees_the_jobs_over_tls_but_not_what_it_may_not_do(
        reactor, tmp_path, monkeypatch):
    """Over https (the test's CA): viewer: jobs, no launch, stop or restart; admin: all."""
    if not _PRESENT:
        absent(_MISSING)
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_MANAGER_PATH", str(tmp_path / "no-selenium-manager"))
    pki = make_pki(tmp_path / "pki")
    agent = Agent(reactor, BrowserLikePolicyForHTTPS(
        trustRoot=Certificate.loadPEM(pki.ca.read_bytes())))
    with free_ports() as ports:  # the API's port, then the workers'
        config = tmp_path / "proactor.cfg"
        config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low + 1}\n"
                          f"child_port_max = {ports.high}\n[{DEMO}]\n")
        daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                              listen=f"ssl:{ports.low}:privateKey={pki.key}:certKey={pki.cert}"
                                     ":interface=127.0.0.1")
        driver = None
        try:
            url = await daemon.listening.addTimeout(30, reactor)

            async def api(method: str, path: str, body: Any) -> Any:
                response = await treq.request(method, url + path, json=body,
                                              headers=bearer_header(daemon.token),
                                              agent=agent, timeout=10, reactor=reactor)
                return json.loads(await response.content())

            viewer = (await api("POST", "/tokens", {"name": "eyes", "role": "viewer"}))["secret"]
            await api("POST", "/jobs", {"module": DEMO, "guid": "seen"})
            options = webdriver.ChromeOptions()
            options.binary_location = str(CHROMIUM)
            for flag in (*FLAGS, f"--ignore-certificate-errors-spki-list={pki.spki}",
                         f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
                options.add_argument(flag)
            options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
            driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
            shots = tmp_path / "screenshots"
            shots.mkdir()
            browser = Browser(driver, reactor, shots)
            await browser.log_in(url, viewer)
            await browser.until("the job, to a viewer", lambda d: d.find_elements(
                By.CSS_SELECTOR, '#jobs tbody tr[data-guid="seen"]'))
            assert await browser.do(lambda: driver.find_element(By.ID, "role").text) == (
                "eyes (viewer)")
            for css in ("#launch", "button.stop", "button.restart", 'a[data-page="hooks"]'):
                assert not await browser.do(shown, driver, css), css
            await browser.shot("viewer")
            await browser.click("#logout")
            await browser.log_in(url, daemon.token)
            await browser.until("the launch form and a stop button, to an admin",
                                lambda d: shown(d, "#launch") and shown(d, "button.stop"))
            assert browser.trouble() == []
        finally:
            if driver is not None:
                await Browser(driver, reactor, tmp_path).do(driver.quit)
            await daemon.stop(reactor)
