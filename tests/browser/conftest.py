"""Fixtures for the real-browser suite: one CA, one Playwright, browsers shared per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from .harness import TestCA, find_chromium, launch_browser

BROWSER_TESTS = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real Chromium (tests/browser)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, not only this directory's.
    for item in items:
        if item.path.is_relative_to(BROWSER_TESTS):
            item.add_marker(pytest.mark.browser)
    # Browser tests run last: Playwright's sync API keeps an asyncio loop running
    # in the main thread from the first browser test to the end of the session,
    # and every later asyncio.run() or pytest-asyncio test would fail under it.
    items.sort(key=lambda item: item.path.is_relative_to(BROWSER_TESTS))


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def chromium_path(playwright_instance: Playwright) -> str:
    path = find_chromium(playwright_instance)
    if path is None:
        # A skipped browser test would hide a broken setup: fail loudly instead.
        pytest.fail(
            "No Chromium found: set SPC_CHROMIUM, or `apt-get install chromium libnss3-tools` "
            "(never `playwright install`)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def browser_factory(
    playwright_instance: Playwright, test_ca: TestCA, chromium_path: str
) -> Iterator[Callable[[bool], Browser]]:
    """`browser_factory(spc_enabled)`: one shared browser per flag value, closed at session end."""
    browsers: dict[bool, Browser] = {}

    def get(spc_enabled: bool) -> Browser:
        if spc_enabled not in browsers:
            browsers[spc_enabled] = launch_browser(
                playwright_instance, test_ca, executable_path=chromium_path, spc_enabled=spc_enabled
            )
        return browsers[spc_enabled]

    yield get
    for browser in browsers.values():
        browser.close()


@pytest.fixture(scope="session")
def browser(browser_factory: Callable[[bool], Browser]) -> Browser:
    return browser_factory(True)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # A fresh context per test: no cookies, storage or authenticators leak between tests.
    context = browser.new_context()
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
