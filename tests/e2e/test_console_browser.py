"""The console in a real headless Chromium against a real stack (api, dispatcher, sweeper and
worker as processes): sign in with a token using the keyboard, trigger a run from the
manifests page and watch it succeed without reloading, open a failed task and read its error
and logs, cancel a long task, filter the runs page. Every page is saved as a screenshot
(``ARCO_CONSOLE_SCREENSHOTS``, a temporary folder by default).

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``); ``.ci/run``
installs them. Without them the suite skips locally and fails in CI (``CI=true``).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from arco_stack.harness import ArcoStack

from .e2e_handlers import e2e_manifest

# One backend is enough for the browser: the pages' queries are covered on both by the API
# suite (services/api/tests/test_console_*.py).
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.parametrize("e2e", ["sqlite"], indirect=True),
]

Result = TypeVar("Result")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def _require_chromium() -> tuple[str, str]:
    if CHROMIUM and DRIVER:
        return CHROMIUM, DRIVER
    reason = (
        "the browser suite needs Debian's chromium and chromium-driver "
        "(apt-get install -y chromium chromium-driver)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must install them (.ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("ARCO_CONSOLE_SCREENSHOTS", "").strip()
    folder = Path(configured) if configured else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    chromium, driver_path = _require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def console(e2e: ArcoStack, browser: WebDriver) -> Console:
    return Console(e2e, browser)


class Console:
    """The browser pointed at the stack's API, with waits that poll and have deadlines."""

    def __init__(self, stack: ArcoStack, driver: WebDriver) -> None:
        self.stack = stack
        self.driver = driver
        self.base = stack.api_url.rstrip("/")
        self.workspace = stack.env["ARCO_WORKSPACE_ID"]
        self.token = stack.token()

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def read(self, look: Callable[[], Result], timeout: float = 10.0) -> Result:
        """``look()``, again if the live refresh replaced an element it was reading (the
        runs list re-renders while other tests' runs change)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return look()
            except StaleElementReferenceException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def text(self, css: str) -> str:
        return self.read(lambda: str(self.driver.find_element(By.CSS_SELECTOR, css).text))

    def texts(self, css: str) -> list[str]:
        """The text of every element ``css`` finds, read from one rendering of the page.
        (Counting elements needs no retry: ``find_elements`` reads the page as it is.)"""
        return self.read(
            lambda: [str(e.text) for e in self.driver.find_elements(By.CSS_SELECTOR, css)]
        )

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
            except StaleElementReferenceException:
                value = None  # the live refresh replaced the element: look again
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.25)

    def attribute(self, css: str, name: str) -> str:
        """Attribute ``name`` of the first element ``css`` finds; "" when there is none."""

        def look() -> str:
            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            return str(found[0].get_attribute(name) or "") if found else ""

        return self.read(look)

    def state_of(self, css: str) -> str:
        return self.attribute(css, "data-state")

    def shot(self, folder: Path, name: str, max_height: int = 4000) -> None:
        """The whole page (up to ``max_height`` pixels), not just the window (Chromium's
        DevTools protocol)."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height)}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
        )
        (folder / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.base}/api/v1/workspaces/{self.workspace}{path}"
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, url, headers=headers, timeout=30, **kwargs)

    def run_id_from_url(self) -> str:
        return str(self.driver.current_url.split("?")[0].rstrip("/").rsplit("/", 1)[1])


def test_sign_in_with_a_token_using_the_keyboard(console: Console, screenshots: Path) -> None:
    console.open("/ui/runs")
    console.wait("the login page", lambda: "/ui/login" in console.driver.current_url)
    body = console.driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(6):
        active = console.driver.switch_to.active_element
        if active.get_attribute("id") == "token":
            break
        active.send_keys(Keys.TAB)
    active = console.driver.switch_to.active_element
    assert active.get_attribute("name") == "token", "the token field is reachable by Tab"
    active.send_keys(console.token)
    console.shot(screenshots, "login")
    active.send_keys(Keys.TAB)
    submit = console.driver.switch_to.active_element
    assert submit.text == "Sign in"
    submit.send_keys(Keys.ENTER)
    console.wait("the runs page", lambda: console.driver.current_url.endswith("/ui/runs"))
    assert "workspace" in console.text("header .who")
    cookies = {cookie["name"]: cookie for cookie in console.driver.get_cookies()}
    session = cookies["arco_console"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert console.driver.execute_script("return document.cookie").find("arco_console=") < 0


def test_trigger_from_the_manifests_page_and_watch_it_succeed(
    console: Console, screenshots: Path
) -> None:
    console.open("/ui/manifests")
    assert "e2e.flaky" in console.text("svg.dag")
    console.shot(screenshots, "manifests")
    console.driver.find_element(By.CSS_SELECTOR, 'label[for="include-upstream"]').click()
    checkbox = console.driver.find_element(By.CSS_SELECTOR, 'input[value="e2e.ok"]')
    label = checkbox.get_attribute("id")
    console.driver.find_element(By.CSS_SELECTOR, f'label[for="{label}"]').click()
    assert checkbox.is_selected()
    console.driver.find_element(By.CSS_SELECTOR, "form.trigger button[type=submit]").click()
    console.wait("the new run's page", lambda: "/ui/runs/" in console.driver.current_url)
    run_id = console.run_id_from_url()
    first_state = console.state_of("#run-state")
    assert first_state in {"PENDING", "RUNNING"}, first_state
    # A marker on this very document: it survives only if the page is never reloaded.
    console.driver.execute_script("window.__notReloaded = true")
    console.wait(
        "SUCCEEDED on the run page", lambda: console.state_of("#run-state") == "SUCCEEDED", 120
    )
    assert console.driver.execute_script("return window.__notReloaded === true")
    assert console.driver.find_element(By.ID, "live").get_attribute("data-live-state") == "stopped"
    assert "SUCCEEDED" in console.text("#run-state"), "the state is written, not only coloured"
    bars = console.driver.find_elements(By.CSS_SELECTOR, "svg.gantt g.bar")
    assert len(bars) >= 3, "flaky's failed attempt, its retry, then ok"
    assert len(console.driver.find_elements(By.CSS_SELECTOR, "svg.dag g.node")) == 2
    console.shot(screenshots, "run-succeeded")
    assert console.api("GET", f"/runs/{run_id}").json()["state"] == "SUCCEEDED"


def test_open_a_failed_task_and_read_its_error_and_logs(
    console: Console, screenshots: Path
) -> None:
    run = console.api("POST", "/runs", json={"selection": ["e2e.after"], "includeUpstream": True})
    assert run.status_code == 201, run.text
    run_id = run.json()["runId"]
    console.open(f"/ui/runs/{run_id}")
    console.wait("FAILED on the run page", lambda: console.state_of("#run-state") == "FAILED", 120)
    assert "Rerun from failure" in console.text(".actions")
    console.shot(screenshots, "run-failed")
    console.driver.find_element(By.LINK_TEXT, "e2e.fail").click()
    console.wait("the task page", lambda: console.state_of("#task-state") == "FAILED")
    assert console.text("#error-message") == "always fails"
    assert console.text("#error-category") == "DATA_QUALITY"
    # The worker uploaded what the attempt wrote (stdout and stderr) before it reported the
    # failure; the task page shows it, and a second upload for the attempt is refused.
    console.wait("the worker's logs", lambda: "quality check failed" in console.text("#live"), 30)
    assert "checking quality" in console.text("#live")
    again = console.api(
        "POST",
        f"/runs/{run_id}/logs",
        json={"taskKey": "e2e.fail", "attempt": 1, "stdout": "again\n", "stderr": ""},
    )
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "CONFLICT"
    console.shot(screenshots, "task-failed")


def test_cancel_a_long_task_from_the_console(console: Console, screenshots: Path) -> None:
    run = console.api("POST", "/runs", json={"selection": ["e2e.long"]})
    assert run.status_code == 201, run.text
    run_id = run.json()["runId"]
    console.open(f"/ui/runs/{run_id}/tasks/e2e.long")
    console.wait("the long task running", lambda: console.state_of("#task-state") == "RUNNING", 60)
    console.open(f"/ui/runs/{run_id}")
    console.driver.find_element(By.PARTIAL_LINK_TEXT, "Cancel run").click()
    console.wait("the confirmation", lambda: console.driver.current_url.endswith("/cancel"))
    console.driver.find_element(By.ID, "reason").send_keys("stopped from the browser test")
    console.shot(screenshots, "cancel-confirm")
    console.driver.find_element(By.ID, "confirm").click()
    console.wait("the notice", lambda: "Cancellation requested" in console.text("main"))
    console.wait(
        "CANCELLED on the run page", lambda: console.state_of("#run-state") == "CANCELLED", 90
    )
    console.shot(screenshots, "run-cancelled")
    task = console.api("GET", f"/runs/{run_id}/tasks/e2e.long").json()
    assert task["state"] == "CANCELLED"


def test_runs_page_filters_by_state_and_finds_a_run_by_its_id_prefix(
    console: Console, screenshots: Path
) -> None:
    console.open("/ui/runs")
    console.wait("the counts", lambda: "FAILED" in console.text(".counts"))
    console.shot(screenshots, "runs")
    select = console.driver.find_element(By.ID, "state-filter")
    select.send_keys("FAILED")
    select.submit()
    console.wait("the filtered page", lambda: "state=FAILED" in console.driver.current_url)
    assert set(console.texts("tbody .state")) == {"FAILED"}
    run_id = console.text("tbody a.mono")
    search = console.driver.find_element(By.ID, "search")
    search.send_keys(run_id[:-3])
    search.send_keys(Keys.ENTER)
    console.wait("the search", lambda: "q=" in console.driver.current_url)
    assert run_id in console.text("tbody")
    console.open("/ui/runs/NO-SUCH-RUN")
    assert "run not found" in console.text("main")


def test_the_runs_list_is_replaced_only_when_it_changes(console: Console) -> None:
    """The live refresh leaves an unchanged section alone (a reader's selection in it
    survives) and still shows a new run without a reload."""
    console.open("/ui/runs?state=SUCCEEDED")
    console.wait("the counts", lambda: "SUCCEEDED" in console.text(".counts"))
    table = "document.querySelector('#live table')"
    console.driver.execute_script(f"{table}.__kept = true")

    def refreshed() -> str:
        return console.attribute("#live", "data-live-updated")

    first = console.wait("a refresh", refreshed, 15)
    console.wait("another refresh", lambda: refreshed() not in ("", first), 15)
    assert console.driver.execute_script(f"return {table}.__kept === true"), "left alone"
    run = console.api("POST", "/runs", json={"selection": ["e2e.ok"]})
    assert run.status_code == 201, run.text
    run_id = run.json()["runId"]
    console.wait("the new run in the list", lambda: run_id in console.text("tbody"), 60)
    assert console.driver.execute_script("return window.location.search") == "?state=SUCCEEDED"


def _layered_manifest(layers: int, width: int) -> dict[str, object]:
    """``layers`` x ``width`` assets, each depending on two assets of the layer before."""

    def key(layer: int, n: int) -> dict[str, str]:
        return {"namespace": "wide", "name": f"l{layer}_a{n:02d}"}

    assets = [
        {
            "id": f"wide-{layer}-{n}",
            "key": key(layer, n),
            "dependencies": [{"upstreamKey": key(layer - 1, up)} for up in {n, (n * 7 + 3) % width}]
            if layer
            else [],
        }
        for layer in range(layers)
        for n in range(width)
    ]
    return {"manifestVersion": "1.0", "codeVersionId": "wide-1", "assets": assets}


def test_a_run_of_two_hundred_tasks_is_drawn_with_every_state_written(
    console: Console, screenshots: Path
) -> None:
    """No worker handles these assets: the first layer fails (no handler), the rest is
    skipped; the graph still shows every task, in layers, with its state as text."""
    manifest = _layered_manifest(8, 25)
    keys = [f"wide.l{layer}_a{n:02d}" for layer in range(8) for n in range(25)]
    try:
        assert console.api("POST", "/manifests", json=manifest).status_code == 201
        run = console.api("POST", "/runs", json={"selection": keys})
        assert run.status_code == 201, run.text
        console.open(f"/ui/runs/{run.json()['runId']}")
        console.wait("the run to end", lambda: console.state_of("#run-state") == "FAILED", 120)
        assert len(console.driver.find_elements(By.CSS_SELECTOR, "svg.dag g.node")) == 200
        assert set(console.texts("svg.dag text.node-state")) == {"FAILED", "SKIPPED"}
        assert console.attribute("svg.dag", "aria-label").endswith("200 nodes in 8 layers")
        console.shot(screenshots, "run-200-tasks", max_height=1300)
    finally:
        console.stack.deploy(e2e_manifest())
