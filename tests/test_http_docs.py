"""The API's documentation pages work offline and put no third-party script on its origin:
``/docs`` loads Swagger UI from the server itself, and the documentation routes need no
token (a browser cannot send one to ``/docs``)."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from api.app import create_app
from tests.support.browser import CHROMIUM_FLAGS
from tests.support.db import Backend
from tests.support.http import Api, api_for


@pytest.fixture
def api(sqlite_backend: Backend) -> Iterator[Api]:
    """Serving documentation does not touch the record: SQLite only."""
    with api_for(sqlite_backend.settings) as a:
        yield a


class References(HTMLParser):
    """Every URL the page makes the browser load: src and href attributes, and URLs in
    its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls += re.findall(r"""['"]((?:https?:)?//[^'"]+|/[^'"\s]*)['"]""", data)


CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def test_docs_load_swagger_ui_from_the_server_itself_without_a_token(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    parser = References()
    parser.feed(page.text)
    assert parser.urls, "the page loads nothing: Swagger UI is missing"
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{url} is not on the API's origin"
    assets = [u for u in parser.urls if u.rsplit(".", 1)[-1] in ("js", "css", "png")]
    assert {u.rsplit(".", 1)[-1] for u in assets} >= {"js", "css"}, parser.urls
    for url in assets:
        served = api.client.get(url)
        assert served.status_code == 200, url
        expected = CONTENT_TYPES["." + url.rsplit(".", 1)[-1]]
        assert expected in served.headers["content-type"], (url, served.headers)
        assert len(served.content) > 1000, url
    assert "/openapi.json" in parser.urls
    spec = api.client.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "pocdir"


def test_redoc_is_not_served_from_a_cdn(api: Api) -> None:
    """ReDoc would load its script from a CDN: it is not served, and not public."""
    assert api.client.get("/redoc").status_code == 401
    assert api.call("GET", "/redoc", api.auth("auditor")).status_code == 404


@pytest.mark.slow
def test_docs_render_in_headless_chromium_loading_only_from_the_server(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    """Offline, under the page's Content-Security-Policy: every operation is drawn, and the
    browser fetched nothing but the server's own assets and API description."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromedriver are needed: `make test` installs them")
    app = create_app(sqlite_backend.settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    options = Options()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        origin = f"http://127.0.0.1:{port}"
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.get(f"{origin}/docs")
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"))
            operations = len(driver.find_elements(By.CSS_SELECTOR, ".opblock"))
            loaded = driver.execute_script(
                "return performance.getEntriesByType('resource').map(function (e) {return e.name;})"
            )
            console = driver.get_log("browser")
        finally:
            driver.quit()
    finally:
        server.should_exit = True
        thread.join(10)
    spec = app.openapi()
    assert operations == sum(len(ops) for ops in spec["paths"].values())
    assert loaded and all(url.startswith(f"{origin}/") for url in loaded), loaded
    assert [e for e in console if e["level"] in ("SEVERE", "WARNING")] == []
