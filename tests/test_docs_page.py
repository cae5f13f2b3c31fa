"""The API page at /docs, in a real headless browser (Debian's chromium, driven by selenium).

The server has an API key on: the page and its assets load without one,
"try it out" is refused until the key is given to the page's Authorize
button, and then the request sent from the page gets a 200. Every request
the browser makes goes to the server itself. Skips where no chromium and
chromedriver are installed (``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests
from conftest import COLORS, Server, image_b64, solid, start_server, stop_and_check_clean, write_config

KEY = "docs-page-key"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extras")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None, reason="no chromium and chromedriver installed"
)


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, work_dir: Path) -> Server:
    config = write_config(work_dir, tiny_model_dir, serving={"instances_per_device": 1, "api_keys": [KEY]})
    running = start_server(config, work_dir)
    yield running
    stop_and_check_clean(running)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def requested_urls(driver) -> list[str]:
    """Every URL the browser asked for since the last call (Chrome's network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_page_and_its_assets_need_no_key_and_everything_else_does(server: Server) -> None:
    page = requests.get(f"{server.url}/docs", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    asset = requests.get(f"{server.url}/docs/static/swagger-ui-bundle.js", timeout=10)
    assert asset.status_code == 200 and len(asset.content) > 100_000
    assert requests.get(f"{server.url}/docs/static/swagger-editor.js", timeout=10).status_code == 404
    home = requests.get(server.url, allow_redirects=False, timeout=10)
    assert home.status_code == 302 and home.headers["Location"] == "docs"
    assert requests.post(f"{server.url}/image-classification", json={}, timeout=10).status_code == 401


def test_try_it_out_from_the_page_reaches_the_server_with_the_key(server: Server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(f"{server.url}/docs")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path")))
    paths = {
        e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert {"/image-classification", "/health", "/metrics", "/openapi.json"} <= paths

    operation = browser.find_element(By.ID, "operations-default-image_classification")

    def execute() -> str:
        """Send the request from the page; the status it shows."""
        operation.find_element(By.CSS_SELECTOR, ".execute").click()
        status = (
            By.CSS_SELECTOR,
            "#operations-default-image_classification .live-responses-table tr.response .response-col_status",
        )
        wait.until(ec.presence_of_element_located(status))
        return browser.find_element(*status).text.strip()

    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    operation.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    body = operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
    body.clear()
    body.send_keys(json.dumps({"image": image_b64(solid(COLORS["red"])), "topk": 1}))
    assert execute().startswith("401")  # no key given yet

    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
    key_field = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".modal-ux input")))
    key_field.send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper .authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".modal-ux .btn-done").click()
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

    operation.find_element(By.CSS_SELECTOR, ".btn-clear").click()
    wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, ".execute"))
    assert execute().startswith("200")
    answer = operation.find_element(
        By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_description"
    ).text
    assert '"name": "red"' in answer

    urls = requested_urls(browser)
    assert any(url.endswith("/openapi.json") for url in urls)
    assert sum(url.endswith("/image-classification") for url in urls) == 2
    foreign = [u for u in urls if not u.startswith((server.url, "data:", "blob:", "about:"))]
    assert foreign == []  # no CDN, no validator badge, no fonts from elsewhere
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []
