"""The generated service's Swagger UI in a real browser, with nothing fetched off the machine.

Chromium is Debian's (`apt-get install chromium`), driven by Playwright's Python package
(requirements-dev.txt), which needs no browser download of its own when it is given one. The
page must load its script, styles and icon from the service itself, obey the page's
Content-Security-Policy (a violation is reported on the console and as an event), authorize with
the OAuth2 password form, and call `GET /api/v1/users/me` with the token it got.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from bakery import clean_env, run_in_project, venv_bin

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
START_TIMEOUT = 60.0
PAGE_TIMEOUT_MS = 15_000
API = "/api/v1"
# Reported by each CSP violation, from the page's start (before Swagger UI's own script runs).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def require_chromium() -> str:
    """A Chromium to drive (CHROMIUM names one). Where none is installed the browser check
    skips, except in CI, which must run it (.ci/run installs Debian's package)."""
    named = os.environ.get("CHROMIUM")
    found = named or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium must be installed in CI (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium): no browser check")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            status: int = answer.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@contextmanager
def served(project: Path, database: Path) -> Iterator[str]:
    """The baked project, migrated and served by uvicorn on a free loopback port, docs on."""
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{database}", "ENVIRONMENT": "local"}
    migrated = run_in_project(project, [venv_bin(project, "alembic"), "upgrade", "head"], env=env)
    assert migrated.returncode == 0, migrated.stdout
    port = free_port()
    log = database.with_suffix(".log")
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                str(venv_bin(project, "uvicorn")),
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=project,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while _get_status(f"{base}{API}/health/live") != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the service did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def register(base: str, email: str, password: str) -> None:
    request = urllib.request.Request(
        f"{base}{API}/auth/register",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 201


@dataclass
class DocsVisit:
    """What a visit to /docs did."""

    status: int | None = None  # of GET /users/me, as the page shows it
    sent_token: bool = False  # the page's call carried the bearer token it got at login
    off_machine: list[str] = field(default_factory=list)  # requests that tried to leave
    violations: list[str] = field(default_factory=list)  # CSP, from the console and events
    page_errors: list[str] = field(default_factory=list)
    failed_step: str | None = None  # the browser step that did not happen, and why
    local: list[str] = field(default_factory=list)  # the paths the page fetched from us


def _authorize_and_call_me(page: Page, base: str, email: str, password: str) -> tuple[int, bool]:
    """The steps a reader takes; returns the status the page shows and whether the call
    carried a bearer token."""
    page.goto(f"{base}/docs", wait_until="networkidle")
    page.locator("button.authorize").first.click()
    page.fill("#oauth_username", email)
    page.fill("#oauth_password", password)
    dialog_buttons = page.locator(".auth-btn-wrapper button")
    dialog_buttons.filter(has_text="Authorize").first.click()
    # Swagger UI turns the dialog's Authorize button into Logout once the login succeeded.
    dialog_buttons.filter(has_text="Logout").first.wait_for()
    dialog_buttons.filter(has_text="Close").first.click()
    operation = page.locator(
        f'.opblock-get:has(.opblock-summary-path[data-path="{API}/users/me"])'
    ).first
    operation.locator(".opblock-summary").first.click()
    operation.locator("button.try-out__btn").click()
    with page.expect_response(lambda answer: urlsplit(answer.url).path == f"{API}/users/me") as me:
        operation.locator("button.execute").click()
    authorization = me.value.request.header_value("authorization") or ""
    shown = operation.locator(".live-responses-table tr.response .response-col_status").first
    return int(shown.inner_text().split()[0]), authorization.startswith("Bearer ")


def visit_docs(base: str, chromium: str, email: str, password: str) -> DocsVisit:
    """Open /docs, authorize with the password form, run "Try it out" on GET /users/me."""
    from playwright.sync_api import Error, Request, Route, sync_playwright

    visit = DocsVisit()
    origin = urlsplit(base).netloc

    def only_this_service(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == origin or request.url.startswith("data:"):
            visit.local.append(urlsplit(request.url).path)
            route.continue_()
        else:
            visit.off_machine.append(request.url)
            route.abort()

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            visit.violations.append(message.text)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.route("**/*", only_this_service)
            page.on("console", on_console)
            page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
            page.add_init_script(RECORD_VIOLATIONS)
            try:
                visit.status, visit.sent_token = _authorize_and_call_me(page, base, email, password)
            except Error as error:
                visit.failed_step = str(error).splitlines()[0]
            visit.violations.extend(page.evaluate("window.__violations || []"))
        finally:
            browser.close()
    return visit


def summary(visit: DocsVisit, extra: Mapping[str, object] | None = None) -> str:
    return json.dumps({**vars(visit), **(extra or {})}, indent=2)
