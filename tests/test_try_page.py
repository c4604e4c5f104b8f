"""The try-it page (GET /) in a real browser: Debian's headless Chromium driven by Selenium through chromedriver.

It loads the page, gets predictions that match the API's own, shows the API's 422 message for bad input, and saves
a screenshot. `make screenshot` runs this test on models/onnx/ and writes docs/images/try-it.png.
"""

import os
import shutil
from pathlib import Path

import httpx
import pytest
from test_serving import Server

pytestmark = [pytest.mark.slow, pytest.mark.chromium]
SENTENCES = ["The cat sat on the mat.", "I drank some of water.", "John seems to be happy."]


@pytest.fixture(scope="module")
def page_server(exported, tmp_path_factory, tools):
    model = Path(os.environ.get("COLA_TRY_MODEL_DIR") or exported / "models/onnx")
    running = Server(model, tmp_path_factory.mktemp("try") / "predictions.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(tools):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try to download a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,640"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    yield driver
    driver.quit()


def ask(browser, text: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    box = browser.find_element(By.ID, "sentences")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.ID, "check").click()
    WebDriverWait(browser, 30).until(
        lambda driver: (
            driver.find_element(By.ID, "check").is_enabled() and driver.find_element(By.ID, "status").text == ""
        )
    )


def test_the_page_predicts_and_shows_the_apis_errors(page_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = httpx.get(f"{page_server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing loaded from anywhere: no CDN, no URL at all

    browser.get(f"{page_server.url}/")
    ask(browser, "\n".join(SENTENCES))
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    api = httpx.post(f"{page_server.url}/v1/predict", json={"sentences": SENTENCES}).json()
    assert len(rows) == len(SENTENCES)
    for row, sentence, expected in zip(rows, SENTENCES, api["predictions"], strict=True):
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        assert cells[0] == sentence and cells[1] == expected["label"]
        assert float(cells[2]) == pytest.approx(expected["probabilities"]["acceptable"], abs=1.5e-3)
    assert browser.find_element(By.ID, "version").text == api["model_version"]
    assert not browser.find_element(By.ID, "error").is_displayed()
    shot = Path(os.environ.get("COLA_SCREENSHOT") or tmp_path / "try-it.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    ask(browser, "a" * 1001)
    message = httpx.post(f"{page_server.url}/v1/predict", json={"sentences": ["a" * 1001]}).json()["error"]["message"]
    shown = browser.find_element(By.ID, "error")
    assert shown.is_displayed() and shown.text == f"HTTP 422: {message}"
    assert not browser.find_element(By.ID, "results").is_displayed()
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    # The one expected console error is the 422 itself; a CSP violation or a script error would show here too.
    assert all("422" in entry["message"] for entry in severe), severe
