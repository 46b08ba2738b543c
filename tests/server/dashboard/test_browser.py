"""The dashboard in a real headless browser: Debian's chromium driven by selenium through
chromium-driver, against a real control plane (uvicorn with the server's own protocol, in
a thread of this process, so its clock can put the rollout three days in the past).

Log in (a wrong token first), read the chart and the numbers, pause through the
confirmation page, see it paused, log out. Screenshots go to the test's tmp_path and,
when $NODEKEEPER_SCREENSHOTS is set (`make screenshots`), into that directory as
dashboard-*.png. Without chromium the test skips, unless `make test` runs it
($NODEKEEPER_TEST_REQUIRE_PG): then a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from PIL import Image

from nodekeeper.server.rollout_health import HealthRule
from nodekeeper.server.runner import build_server
from tests.support import free_port

from .scenario import (
    EVIL,
    NOW,
    TOKEN,
    Clock,
    Node,
    admin_headers,
    populate,
    publish,
    rollout,
    settings,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"


def _browser_or_skip():
    missing = [p for p in (CHROMIUM, DRIVER) if not os.access(p, os.X_OK)]
    try:
        from selenium import webdriver  # noqa: F401
    except ImportError:
        missing.append("the selenium package (dev dependency)")
    if missing:
        reason = (
            f"no headless browser: {', '.join(missing)} missing; install the Debian packages "
            "chromium and chromium-driver (scripts/system-packages.txt, `make system-packages`)"
        )
        if os.environ.get("NODEKEEPER_TEST_REQUIRE_PG"):
            pytest.fail(f"`make test` runs the browser tests, but {reason}")
        pytest.skip(reason)


@pytest.fixture
def control_plane(tmp_path):
    """A real control plane on loopback with three days of history; yields its URL."""
    yield from _control_plane(tmp_path, health_interval=60.0)


@pytest.fixture
def judging_control_plane(tmp_path):
    """The same, judging its rollouts' health every 0.2 s (the auto-pause). It pauses on
    no fewer than 6 failed nodes, so a test that sends its 6 failures last knows the
    numbers the pause records, however the rounds fall between its reports."""
    yield from _control_plane(tmp_path, health_interval=0.2, health_rule=HealthRule(min_affected=6))


def _control_plane(tmp_path, health_interval: float, **kw):
    clock = Clock()
    port = free_port()
    server = build_server(
        settings(tmp_path, clock, health_interval=health_interval, **kw),
        "127.0.0.1",
        port,
        log_level="warning",
    )
    thread = threading.Thread(target=server.run, name="dashboard-cp", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, "the control plane to answer")
        with httpx.Client(base_url=url, timeout=30) as client:
            populate(client, clock)
        yield url, clock
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def browser():
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # we run as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,800",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Shots:
    def __init__(self, driver, out: Path) -> None:
        self.driver = driver
        self.out = out
        self.taken: list[Path] = []
        out.mkdir(parents=True, exist_ok=True)

    def viewport(self, width: int, height: int) -> None:
        """Make the page's viewport (not the window) this size, as a screen of it shows."""
        self.driver.set_window_size(width, height)
        inner = self.driver.execute_script("return [window.innerWidth, window.innerHeight]")
        self.driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])

    def take(self, name: str, full: bool = False) -> Path:
        path = self.out / f"dashboard-{name}.png"
        if full:  # the whole page: the viewport as tall as the document
            width = self.driver.execute_script("return window.innerWidth")
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.viewport(width, height)
        self.driver.save_screenshot(str(path))
        with Image.open(path) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colours is None or len(colours) > 20, f"{path} looks blank"
        self.taken.append(path)
        return path

    def publish(self) -> None:
        target = os.environ.get("NODEKEEPER_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            for path in self.taken:
                shutil.copyfile(path, Path(target) / path.name)


def navigate(driver, element_id: str) -> None:
    """Click a button that loads a new page and wait until the new page is complete: a
    click returns before the navigation, and the old page may hold the same ids. The old
    page is marked by a window property the new one does not have; errors while the
    documents swap (chromedriver's "node does not belong to the document") are retried."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    driver.execute_script("window.nkOldPage = true")
    driver.find_element(By.ID, element_id).click()
    WebDriverWait(driver, 15, poll_frequency=0.05, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.nkOldPage && document.readyState === 'complete'")
    )


def log_in(browser, url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url + "/dashboard")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    navigate(browser, "login")
    assert browser.current_url == url + "/dashboard"


def test_log_in_read_the_rollout_pause_it_and_log_out(control_plane, browser, tmp_path):
    from selenium.webdriver.common.by import By

    control_plane, _clock = control_plane

    shots = Shots(browser, tmp_path / "screenshots")
    shots.viewport(1280, 800)
    find = browser.find_element

    browser.get(control_plane + "/dashboard")
    assert browser.current_url.endswith("/dashboard/login")
    find(By.ID, "token").send_keys("not-the-token")
    navigate(browser, "login")
    assert "Wrong admin token" in find(By.ID, "login-error").text
    shots.take("login-error")
    find(By.ID, "token").send_keys(TOKEN)
    navigate(browser, "login")

    # The rollout and the numbers, as `rollout status` has them.
    assert browser.current_url == control_plane + "/dashboard"
    assert find(By.ID, "state-storagenode").text.lower() == "running"
    assert find(By.ID, "percent-storagenode").text == "60.00 %"
    ramp = find(By.CSS_SELECTOR, "#p-storagenode svg.chart polyline.ramp")
    assert len(ramp.get_attribute("points").split()) >= 6  # start, pause, resume, set, now
    rows = {
        tr.find_element(By.CSS_SELECTOR, ".ver").text: tr.find_elements(By.TAG_NAME, "td")
        for tr in find(By.ID, "versions-storagenode").find_elements(By.CSS_SELECTOR, "tbody tr")
    }
    assert [rows["1.0.0"][1].text, rows["1.0.0"][2].text] == ["9", "0"]
    assert [rows["1.1.0"][1].text, rows["1.1.0"][2].text] == ["3", "2"]
    assert "rolled_back 1" in rows["1.1.0"][3].text
    # A node's message with markup is shown as text, not run.
    messages = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#reports td.msg")]
    assert EVIL in messages
    assert browser.execute_script("return document.querySelectorAll('main script').length") == 0
    shots.take("overview")
    shots.take("full", full=True)
    shots.viewport(800, 800)
    shots.take("narrow", full=True)
    shots.viewport(1280, 800)

    # Pause through the confirmation page.
    navigate(browser, "pause-storagenode")
    assert "Pause the rollout of storagenode?" in find(By.TAG_NAME, "h1").text
    shots.take("confirm")
    navigate(browser, "confirm")
    assert find(By.ID, "state-storagenode").text.lower() == "paused"
    assert find(By.ID, "notice").text.startswith("Paused")
    assert find(By.ID, "resume-storagenode").is_displayed()
    audit = find(By.ID, "audit").find_elements(By.CSS_SELECTOR, "tbody tr")[0].text
    assert "rollout.pause" in audit and "(dashboard)" in audit
    shots.take("paused")

    navigate(browser, "logout")
    assert "Logged out." in find(By.CLASS_NAME, "notice").text
    browser.get(control_plane + "/dashboard")
    assert browser.current_url.endswith("/dashboard/login")
    shots.publish()


def test_a_rollout_that_paused_itself_shows_why(judging_control_plane, browser, tmp_path):
    """A staged rollout of a bad release, paused by the control plane's own health check
    (a real replica judging signed reports), as the operator finds it on the page."""
    from selenium.webdriver.common.by import By

    url, clock = judging_control_plane
    with httpx.Client(base_url=url, timeout=30) as client:
        clock.now = NOW - 3600
        publish(client, "storagenode-updater", "1.1.0")
        rollout(
            client, "start", process="storagenode-updater", version="1.1.0",
            stages=[50, 100], soak_seconds=6 * 3600,
        )  # fmt: skip
        clock.now = NOW - 1800
        # The two good updates first: the rule cannot pause before the sixth failure.
        for i in (6, 7, 0, 1, 2, 3, 4, 5):
            kind = "rolled_back" if i < 6 else "update_succeeded"
            version = "1.0.0" if i < 6 else "1.1.0"
            Node(100 + i).send(
                client, clock.now + i, version, kind, process="storagenode-updater",
                target_version="1.1.0",
                message="1.1.0 exited 3 times within the probation; back on 1.0.0"
                if i < 6 else "updated",
            )  # fmt: skip
        clock.now = NOW

        def auto_paused() -> dict | None:
            rows = client.get("/v1/admin/status", headers=admin_headers()).json()
            row = next(r for r in rows if r["process"] == "storagenode-updater")
            return row if row["pause"] and row["pause"]["by"] == "auto" else None

        row = wait_until(auto_paused, 30, "the health check to pause the rollout")
    assert (row["pause"]["numbers"]["updated"], row["pause"]["numbers"]["failed"]) == (8, 6)

    shots = Shots(browser, tmp_path / "screenshots")
    shots.viewport(1280, 800)
    log_in(browser, url)
    assert browser.find_element(By.ID, "state-storagenode-updater").text.lower() == "paused"
    reason = browser.find_element(By.ID, "pause-reason-storagenode-updater")
    assert "6 of 8 updated nodes failed" in reason.text, reason.text
    browser.execute_script("arguments[0].scrollIntoView(true); window.scrollBy(0, -70)", reason)
    shots.take("auto-paused")
    shots.publish()


@pytest.fixture
def signing_control_plane(tmp_path):
    """The same control plane with TUF keys (decision 084): a root, a signed release."""
    from nodekeeper.server.client import AdminClient
    from nodekeeper.server.tuf_keys import load_signer
    from tests.server.releases import release_zip
    from tests.server.tufrepo import make_keys

    keys = make_keys(tmp_path / "keys")
    for url, clock in _control_plane(
        tmp_path, health_interval=60.0, tuf_online_keys=keys.online, tuf_interval=0.1
    ):
        client = AdminClient(url, TOKEN)
        try:
            client.request("POST", "/v1/admin/tuf/root", json={"root": keys.root_file.read_text()})
            release_zip(tmp_path / "sn.zip", "1.2.0")
            client.publish(
                "storagenode",
                "1.2.0",
                {"linux_amd64": str(tmp_path / "sn.zip")},
                targets_key=load_signer(keys.targets_key),
                trusted_root=keys.root_file.read_bytes(),
            )
        finally:
            client.close()
        yield url, clock, keys


def test_signed_releases_warn_when_the_timestamp_cannot_be_resigned(
    signing_control_plane, browser, tmp_path
):
    """The timestamp key is gone from the server and 14 h have passed: the banner says the
    key is missing and the card marks the timestamp, 10 h from expiry, not re-signed."""
    from selenium.webdriver.common.by import By

    url, clock, keys = signing_control_plane
    (keys.online / "timestamp.pem").unlink()
    clock.now = NOW + 14 * 3600

    def warned() -> bool:
        with httpx.Client(base_url=url, headers=admin_headers(), timeout=30) as c:
            return bool(c.get("/v1/admin/tuf").json()["roles"]["timestamp"]["warning"])

    wait_until(warned, 30, "the timestamp's warning")
    shots = Shots(browser, tmp_path / "screenshots")
    shots.viewport(1280, 800)
    log_in(browser, url)
    banners = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".signing-problem")]
    assert any("do not include timestamp" in b for b in banners), banners
    assert any("was not re-signed" in b for b in banners), banners
    row = browser.find_element(By.ID, "tuf-timestamp")
    assert "fail" in row.get_attribute("class") and "10 h" in row.text, row.text
    assert "fail" not in browser.find_element(By.ID, "tuf-root").get_attribute("class")
    shots.take("signing-banner")
    card = browser.find_element(By.ID, "signing")
    browser.execute_script("arguments[0].scrollIntoView(true); window.scrollBy(0, -20)", card)
    shots.take("signing")
    shots.publish()
