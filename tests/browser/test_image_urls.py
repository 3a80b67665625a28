"""Chromium's own URL parser agrees with spc_embed.image_urls: what it accepts, Chromium keeps as written."""

from __future__ import annotations

from playwright.sync_api import Page
from test_image_urls import ACCEPTED, ACCEPTED_LOCAL, DATA, REWRITTEN


def hrefs(page: Page, urls: list[str]) -> list[str]:
    # new URL() runs the canonicalizer that also writes the icon and logo URLs into SPC's client data.
    return page.evaluate("urls => urls.map(u => { try { return new URL(u).href } catch { return null } })", urls)


def test_chromium_keeps_every_accepted_url_as_written(page: Page) -> None:
    urls = ACCEPTED + ACCEPTED_LOCAL + DATA
    assert hrefs(page, urls) == urls


def test_chromium_rewrites_every_refused_spelling(page: Page) -> None:
    urls = list(REWRITTEN)
    rewritten = hrefs(page, urls)
    assert [url for url, href in zip(urls, rewritten, strict=True) if href == url] == []
