"""The try-it page: off unless configured, self-contained, and driven in headless Chromium (selenium with
Debian's chromium-driver): a wrong password shows IAM's error, a right one opens the API form, a photo sent
to image tagging comes back with its tags listed and its boxes drawn, dark-enhance shows before and after.
Screenshots are kept in the test's folder (and copied to $IMGREC_SCREENSHOTS when set, for a look)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from imgrec.service.app import ImageRecognitionService
from imgrec.settings import Settings
from tests.helpers import DOMAIN, PASSWORD, PROJECT, PROJECT_NAME, USER, encode, photo


def test_console_is_off_unless_enabled():
    paths = lambda settings: {route.path for route in ImageRecognitionService(settings).routes()}  # noqa: E731
    assert "/console" not in paths(Settings())
    assert "/console" in paths(Settings(console={"enabled": True}))


def test_console_page_is_self_contained(service):
    resp = httpx.get(service.base_url + "/console")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    nonce = re.search(r"script-src 'nonce-([^']+)'", resp.headers["content-security-policy"]).group(1)
    page = resp.text
    assert f'<script nonce="{nonce}">' in page and "default-src 'none'" in resp.headers["content-security-policy"]
    assert not re.search(r"<script[^>]*\bsrc=|<link\b|@import|url\(http", page)  # nothing fetched from elsewhere
    assert '"path": "/v2/{project_id}/image/tagging"' in page and "__APIS__" not in page
    assert httpx.get(service.base_url + "/console").headers["content-security-policy"] != resp.headers[
        "content-security-policy"]  # a fresh nonce per response


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromium-driver are not installed: scripts/system-deps.sh installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1500", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _shot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / name))
    if os.environ.get("IMGREC_SCREENSHOTS"):
        shutil.copy(tmp_path / name, Path(os.environ["IMGREC_SCREENSHOTS"]) / name)


def test_console_signs_in_and_shows_tags_boxes_and_before_after(service, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    find = browser.find_element
    browser.get(service.base_url + "/console")
    for field, value in (("domain", DOMAIN), ("user", USER), ("password", "not-the-password"),
                         ("project", PROJECT_NAME)):
        find(By.ID, field).send_keys(value)
    find(By.ID, "signin").click()
    wait.until(lambda d: "failed" in d.find_element(By.ID, "signin-status").text)
    assert "IAM.0004" in find(By.ID, "signin-status").text and not find(By.ID, "try").is_displayed()
    _shot(browser, tmp_path, "console-wrong-password.png")

    find(By.ID, "password").clear()
    find(By.ID, "password").send_keys(PASSWORD)
    find(By.ID, "signin").click()
    wait.until(lambda d: d.find_element(By.ID, "try").is_displayed())
    assert PROJECT in find(By.ID, "signin-status").text and find(By.ID, "password").get_attribute("value") == ""

    picture = tmp_path / "chelsea.jpg"
    picture.write_bytes(encode(photo("chelsea")))
    Select(find(By.ID, "api")).select_by_value("image_tagging")
    find(By.ID, "params").clear()
    find(By.ID, "params").send_keys('{"language": "en", "threshold": 30}')
    find(By.ID, "file").send_keys(str(picture))
    wait.until(lambda d: d.find_element(By.ID, "picture").is_displayed())
    find(By.ID, "send").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tags li"))
    tags = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#tags li")]
    assert any(t.startswith("cat ") for t in tags), tags
    labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#picture text")]
    assert browser.find_elements(By.CSS_SELECTOR, "#picture rect.box") and "cat" in labels
    assert '"tags"' in find(By.ID, "json").text
    _shot(browser, tmp_path, "console-tagging.png")

    dark = tmp_path / "dark.png"
    dark.write_bytes(encode((photo("coffee") // 5).astype("uint8"), "PNG"))
    Select(find(By.ID, "api")).select_by_value("dark_enhance")
    find(By.ID, "file").send_keys(str(dark))
    find(By.ID, "send").click()
    wait.until(lambda d: d.find_elements(By.ID, "after-image"))
    after = find(By.ID, "after-image")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", after) > 0)  # it decoded
    assert browser.execute_script("return arguments[0].naturalWidth", after) == photo("coffee").shape[1]
    _shot(browser, tmp_path, "console-dark-enhance.png")
