"""Open an HTML file in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) and
record what a reader's browser would do with it: every request it made, the loads that failed,
console errors and uncaught page errors; and take a screenshot.

Playwright's own browser download is never used (`executable_path`), and every request other than
the file itself and `data:` URLs is aborted and recorded, so a report that tried to reach the
network fails the test instead of reaching it.

Also a script, to refresh the screenshot committed under docs/:
    python3 -m tests.report.chromium reports/cnn-hardware-plan.html docs/report-screenshot.png 1100 3300
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("CAPSIM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip


def chromium_path() -> str | None:
    """The Chromium binary to drive, None when it (or Playwright) is not installed."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return None
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


@dataclass
class PageVisit:
    """What the browser did with the page."""

    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    images: int = 0
    broken_images: int = 0
    title: str = ""


def visit(html_path: Path, screenshot: Path, width: int = 1200, height: int | None = None) -> PageVisit:
    """Load `html_path` from disk, wait until it is loaded, screenshot the whole page (or only its
    first `height` pixels)."""
    from playwright.sync_api import sync_playwright

    url = html_path.resolve().as_uri()
    seen = PageVisit()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height or 900})

            def route(handle: object) -> None:
                request_url = handle.request.url  # type: ignore[attr-defined]
                if request_url == url or request_url.startswith("data:"):
                    handle.continue_()  # type: ignore[attr-defined]
                else:
                    seen.blocked.append(request_url)
                    handle.abort()  # type: ignore[attr-defined]

            page.route("**/*", route)
            page.on("request", lambda request: seen.requests.append(request.url))
            page.on("requestfailed", lambda request: seen.failed.append(f"{request.url}: {request.failure}"))
            page.on("console", lambda msg: seen.console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: seen.page_errors.append(str(exc)))
            page.goto(url, wait_until="load")
            seen.title = page.title()
            seen.images = page.evaluate("document.images.length")
            seen.broken_images = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
            page.screenshot(path=str(screenshot), full_page=height is None)
        finally:
            browser.close()
    return seen


if __name__ == "__main__":
    size = [int(arg) for arg in sys.argv[3:5]]
    result = visit(Path(sys.argv[1]), Path(sys.argv[2]), *size)
    print(result)
