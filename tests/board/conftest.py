"""Fixtures for the board's browser tests: Debian's chromium driven by Playwright (never a
browser Playwright would download), and a whole depot with the board served beside it.

Screenshots go to the test's tmp_path; with ``CROSSDOCK_SCREENSHOTS=DIR`` also to DIR (the
committed ones in docs/screenshots were written so:
``CROSSDOCK_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest -m board tests/board``,
as the README says).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/system-packages installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class Shots:
    """``shots.take(page, "board-conflicts", selector=None)``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        out = os.environ.get("CROSSDOCK_SCREENSHOTS")
        self.out = Path(out) if out else None

    def take(self, page: Any, name: str, *selectors: str) -> Path:
        """The viewport, or the box around the elements ``selectors`` name."""
        path = self.tmp / f"{name}.png"
        if selectors:
            scroll = page.evaluate("window.scrollY")
            boxes = [page.locator(s).bounding_box() for s in selectors]
            top = min(b["y"] for b in boxes) + scroll
            bottom = max(b["y"] + b["height"] for b in boxes) + scroll
            page.screenshot(path=str(path), full_page=True,
                            clip={"x": 0, "y": max(0, top - 8), "width": 1366,
                                  "height": bottom - top + 16})
        else:
            page.screenshot(path=str(path))
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.out / path.name)
        return path


@pytest.fixture
def shots(tmp_path: Path) -> Shots:
    return Shots(tmp_path / "screens")


class Optimizer:
    """A loopback HTTP optimizer answering ``GET /plan`` with ``{"proposals": [...]}``."""

    def __init__(self) -> None:
        self.proposals: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"proposals": owner.proposals}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Optimizer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def optimizer() -> Iterator[Optimizer]:
    with Optimizer() as server:
        yield server
