"""Fixtures for browser tests: a headless Debian Chromium driven by Playwright's sync API.

Without ``/usr/bin/chromium`` (``apt-get install chromium``) these tests are skipped, unless the ``CI``
environment variable is set: CI installs Chromium, so there a missing browser is a failure.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ALLOWED_SCHEMES = ("file:", "data:", "blob:", "about:")
_ALL_FIGURES_SETTLED = """() => Array.from(document.querySelectorAll("div.figure"))
    .every((d) => d.querySelector(".main-svg") || d.classList.contains("figure-error"))"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole session."""
    if not CHROMIUM.exists():
        _unavailable(
            f"{CHROMIUM} not found; install it with `apt-get install -y chromium` to run browser tests"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed; `pip install playwright`")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclasses.dataclass
class OpenedPage:
    """A page with everything it reported while loading and running."""

    page: Page
    console_errors: list[str] = dataclasses.field(default_factory=list)
    page_errors: list[str] = dataclasses.field(default_factory=list)
    dialogs: list[str] = dataclasses.field(default_factory=list)
    requests: list[str] = dataclasses.field(default_factory=list)

    @property
    def external_requests(self) -> list[str]:
        """Requests to anything but ``file:``/``data:``/``blob:``/``about:`` URLs."""
        return [url for url in self.requests if not url.startswith(ALLOWED_SCHEMES)]

    def assert_clean(self) -> None:
        """No console errors, no uncaught exceptions, no dialogs, no network."""
        assert self.console_errors == []
        assert self.page_errors == []
        assert self.dialogs == []
        assert self.external_requests == []


@pytest.fixture
def open_report(browser: Browser) -> Iterator[Callable[..., OpenedPage]]:
    """Open a written report from its ``file://`` URL and record console, errors, dialogs and requests."""
    contexts = []

    def _open(path: Path, *, color_scheme: Any = "light", width: int = 1280, height: int = 900) -> OpenedPage:
        context = browser.new_context(
            viewport={"width": width, "height": height}, color_scheme=color_scheme, reduced_motion="reduce"
        )
        contexts.append(context)
        page = context.new_page()
        opened = OpenedPage(page)
        page.on("console", lambda m: opened.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: opened.page_errors.append(str(e)))
        page.on("request", lambda r: opened.requests.append(r.url))

        def _dialog(dialog: Any) -> None:
            opened.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", _dialog)
        # Block (and still record) anything that would leave the machine.
        context.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(ALLOWED_SCHEMES) else route.abort()
            ),
        )
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function(_ALL_FIGURES_SETTLED, timeout=10_000)
        return opened

    yield _open
    for context in contexts:
        context.close()
