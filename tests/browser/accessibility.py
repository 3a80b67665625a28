"""Accessibility checks in the real browser: axe-core, the layout at a width, and where the keyboard focus is.

axe-core comes inside the PyPI package axe-playwright-python (no download at
test time). It runs in one document at a time: a cross-origin issuer frame is
audited in its own document (Playwright's Frame evaluates there, CSP or not),
and the page around it with ``iframes: false``.
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Frame, Page

# WCAG 2.0 and 2.1, levels A and AA: what EN 301 549 (the European Accessibility Act) asks for.
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": WCAG_21_AA}, "iframes": False, "resultTypes": ["violations"]}
WIDTHS = (1280, 320)

_axe = Axe()


def axe_violations(target: Page | Frame) -> list[str]:
    """Every WCAG 2.1 A/AA violation in ``target``'s document, one line each (rule, impact, elements)."""
    violations = _axe.run(target, options=AXE_OPTIONS).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at " + ", ".join(" ".join(n["target"]) for n in v["nodes"][:5])
        for v in violations
    ]


def sideways_overflow(target: Page | Frame) -> int:
    """How many CSS pixels the document is wider than its viewport (0: nothing scrolls sideways)."""
    return target.evaluate("() => Math.max(0, document.documentElement.scrollWidth - window.innerWidth)")


def frame_overflow(frame: Frame) -> dict[str, Any]:
    """What of a frame's document lies outside the frame: the overflow, and every button or message cut off."""
    return frame.evaluate("""() => {
      const cut = [];
      for (const element of document.querySelectorAll("button, [role=status], [role=alert], h1, p, dd")) {
        const box = element.getBoundingClientRect();
        if (box.width === 0 && box.height === 0) continue;  // hidden or empty
        if (box.bottom > window.innerHeight + 0.5 || box.right > window.innerWidth + 0.5 || box.left < -0.5) {
          cut.push(`${element.tagName.toLowerCase()}#${element.id} ${Math.round(box.bottom)}/${window.innerHeight}`);
        }
      }
      const root = document.documentElement;
      return {down: Math.max(0, root.scrollHeight - window.innerHeight),
              sideways: Math.max(0, root.scrollWidth - window.innerWidth), cut};
    }""")


def settled_fit(page: Page, frame: Frame, *, timeout_ms: int = 3000) -> dict[str, Any]:
    """``frame_overflow`` once the frame's height report has been applied (or the time is up).

    A change of width reaches the frame's size in a few hops (layout, ResizeObserver, postMessage,
    the page's listener, layout): on a busy machine that can take longer than a fixed pause. And
    Chromium throttles the rendering (ResizeObserver included) of a cross-origin frame that is
    out of view, so the frame is brought into view first, as the cardholder would scroll to it.
    """
    frame.frame_element().scroll_into_view_if_needed()
    waited = 0
    while True:
        fit = frame_overflow(frame)
        if not (fit["cut"] or fit["down"] or fit["sideways"]) or waited >= timeout_ms:
            return fit
        page.wait_for_timeout(100)
        waited += 100


def focus(page: Page, frame: Frame | None = None) -> str:
    """Where the keyboard focus is: ``page:#id``, ``frame:#id`` (inside ``frame``), or ``page:BODY``/``frame:BODY``."""
    describe = """() => {
      const element = document.activeElement;
      if (!element || element === document.body || element === document.documentElement) return "BODY";
      if (element.tagName === "IFRAME") return "IFRAME";
      return element.id ? "#" + element.id : element.tagName;
    }"""
    on_page = page.evaluate(describe)
    if on_page != "IFRAME":
        return "page:" + on_page
    if frame is None:
        return "page:IFRAME"
    inside = frame.evaluate(describe)
    on_frame = page.evaluate("(frame) => document.activeElement === frame", frame.frame_element())
    return ("frame:" if on_frame else "other-frame:") + inside


def settle(page: Page, ms: int = 250) -> None:
    """Let resize reports travel (frame -> page -> layout) after a change of width or content."""
    page.wait_for_timeout(ms)
