"""Open a generated page in a real headless Chromium and report what a reader's browser sees.

``check_page(path)`` loads the file with playwright driving Debian's ``chromium`` (no
download of playwright's own browsers) and returns a :class:`PageCheck`: console errors
(a blocked fetch shows up here as a content-security-policy error), every request other
than ``data:`` URIs and the page itself, images that did not decode, axe accessibility
violations of impact serious or critical, and a screenshot of the top of the page in
``test-artifacts/`` (gitignored; kept by CI as an artifact).

Without chromium (or playwright) the check is skipped with the reason; in CI (environment
variable ``CI`` set) it fails instead, since ``.ci/run`` installs the browser.
"""

from __future__ import annotations

import atexit
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

__all__ = ["ARTIFACTS", "CHROMIUM", "PageCheck", "check_page", "chromium_or_skip"]

CHROMIUM = os.environ.get("SEETHROUGH_CHROMIUM", "/usr/bin/chromium")
"""The browser: Debian's package (override with ``SEETHROUGH_CHROMIUM``)."""

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
"""Where screenshots go (relative names passed to :func:`check_page` land here)."""

FLAGS = (
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-background-networking",  # no update checks, safe-browsing lists, ...
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

VIEWPORT = {"width": 1280, "height": 900}

SERIOUS = ("serious", "critical")
"""axe impacts that fail a page (``minor`` and ``moderate`` are reported by axe, not failed)."""


@dataclass(frozen=True)
class PageCheck:
    """What the browser saw on one page.

    ``requests`` are the URLs the page asked for, other than ``data:`` URIs and the page
    itself (a self-contained page has none; a job page asks only for files of its own
    folder: see :meth:`outside`). ``broken_images`` are the ``src`` of ``<img>`` elements
    with ``naturalWidth == 0`` after load. ``serious_violations`` are ``"rule-id: target"``
    for each node of an axe violation with impact serious or critical.
    """

    path: Path
    console_errors: tuple[str, ...]
    requests: tuple[str, ...]
    broken_images: tuple[str, ...]
    serious_violations: tuple[str, ...]
    images: int  # <img> elements on the page
    scripts: int  # <script> elements in the DOM (our pages have none)
    title: str  # document.title
    text: str  # the body's text as rendered (innerText): what a reader sees
    screenshot: Path | None

    def outside(self, folder: Path | None = None) -> tuple[str, ...]:
        """The requests for anything that is not a file in ``folder`` (default: the page's)."""
        root = (folder or self.path.parent).resolve()
        return tuple(url for url in self.requests if not _within(url, root))

    def problems(self) -> list[str]:
        """Everything wrong, one line each (empty for a clean self-contained page)."""
        return [
            *(f"console error: {e}" for e in self.console_errors),
            *(f"request: {u}" for u in self.requests),
            *(f"broken image: {s[:80]}" for s in self.broken_images),
            *(f"accessibility: {v}" for v in self.serious_violations),
            *([f"{self.scripts} script element(s)"] if self.scripts else []),
        ]


def _within(url: str, root: Path) -> bool:
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return False
    return Path(unquote(parsed.path)).resolve().is_relative_to(root)


def chromium_or_skip() -> None:
    """Skip the calling test when no browser is here (fail instead in CI)."""
    missing = []
    if shutil.which(CHROMIUM) is None:
        missing.append(f"chromium ({CHROMIUM}; Debian: apt-get install chromium)")
    try:
        import axe_playwright_python  # noqa: F401
        import playwright  # noqa: F401
    except ImportError:
        missing.append('playwright and axe-playwright-python (pip install -e ".[dev]")')
    if missing:
        reason = "browser check needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: in CI it must run (.ci/run installs chromium)")
        pytest.skip(reason)


_BROWSER: dict[str, Any] = {}


def _browser() -> Any:
    """One browser per test process, started on first use, closed at exit."""
    if "browser" not in _BROWSER:
        from playwright.sync_api import sync_playwright

        driver = sync_playwright().start()
        _BROWSER["driver"] = driver
        _BROWSER["browser"] = driver.chromium.launch(executable_path=CHROMIUM, args=list(FLAGS))
        atexit.register(_close)
    return _BROWSER["browser"]


def _close() -> None:
    browser, driver = _BROWSER.pop("browser", None), _BROWSER.pop("driver", None)
    if browser is not None:
        browser.close()
    if driver is not None:
        driver.stop()


def _local_only(route: Any) -> None:
    """Let local files load (the page, its folder's images); abort the rest (http, ws, ...)."""
    if route.request.url.startswith("file:"):
        route.continue_()
    else:
        route.abort()


_BROKEN_IMAGES = """() => Array.from(document.images)
    .filter(img => !img.complete || img.naturalWidth === 0)
    .map(img => img.getAttribute('src') || '')"""


def check_page(path: str | os.PathLike[str], screenshot: str | None = None) -> PageCheck:
    """Open ``path`` (an HTML file) in headless Chromium and report what it saw.

    The page holds no JavaScript (``scripts`` counts any); the harness runs its own probes
    and axe through the DevTools protocol. Every request is recorded, and every one that is
    not for a local file is aborted: a page that tries to fetch something fails the check
    and still fetches nothing. ``screenshot``: a file name (in :data:`ARTIFACTS` when
    relative) for a PNG of the top of the page (one viewport, 1280×900).
    """
    chromium_or_skip()
    from axe_playwright_python.sync_playwright import Axe

    page_path = Path(path).resolve()
    context = _browser().new_context(viewport=VIEWPORT, offline=True)
    try:
        page = context.new_page()
        errors: list[str] = []
        requests: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: requests.append(r.url))
        page.route("**/*", _local_only)
        page.goto(page_path.as_uri(), wait_until="load")
        broken = page.evaluate(_BROKEN_IMAGES)
        counts = page.evaluate("[document.images.length, document.scripts.length]")
        title, text = page.evaluate("[document.title, document.body.innerText]")
        axe = Axe().run(page)
        shot = None
        if screenshot is not None:
            shot = Path(screenshot)
            shot = shot if shot.is_absolute() else ARTIFACTS / shot
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=False)
    finally:
        context.close()
    own = page_path.as_uri()
    return PageCheck(
        path=page_path,
        console_errors=tuple(errors),
        requests=tuple(u for u in requests if not u.startswith("data:") and u != own),
        broken_images=tuple(broken),
        serious_violations=tuple(
            f"{v['id']}: {node.get('target')}"
            for v in axe.response["violations"]
            if v.get("impact") in SERIOUS
            for node in v["nodes"]
        ),
        images=counts[0],
        scripts=counts[1],
        title=title,
        text=text,
        screenshot=shot,
    )
