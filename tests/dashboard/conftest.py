"""Fixtures for the dashboard's browser tests: the real `deploy-safety` binary on 127.0.0.1, a
fresh database per test module (SQLite in a temporary directory, or a fresh schema of the
PostgreSQL database named by DEPLOY_SAFETY_TEST_POSTGRES_URL), tokens for each role, and
Chromium driven by Playwright (the system's /usr/bin/chromium; no browser is ever downloaded).

Environment (scripts/dashboard-test sets these):
  DEPLOY_SAFETY_BINARY             the binary (default: $CARGO_TARGET_DIR/debug/deploy-safety)
  DEPLOY_SAFETY_DASHBOARD_BACKEND  sqlite (default) or postgres
  DEPLOY_SAFETY_TEST_POSTGRES_URL  the PostgreSQL database for the postgres backend
  DEPLOY_SAFETY_DASHBOARD_OUT      the screenshots' folder (default: target/dashboard-screenshots
                                   in the repository); each backend writes to its own subfolder
  DEPLOY_SAFETY_CHROMIUM           the browser (default /usr/bin/chromium)

A module that needs a server with its own settings (a TOML file, docs/configuration.md) starts
one with `start_server(settings)`, and opens pages on it with the `new_page` fixture.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[2]
API = "/api/deploy-safety"
STARTUP_DEADLINE_S = 30.0
# Playwright's default wait for each expectation and action; scenarios that need a tighter
# bound (the lockdown banner's 3 s) pass their own.
EXPECT_TIMEOUT_MS = 10_000


def _binary() -> Path:
    explicit = os.environ.get("DEPLOY_SAFETY_BINARY")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(
        Path.home() / ".cache" / "deploy-safety" / "target"
    )
    return Path(target) / "debug" / "deploy-safety"


def backend() -> str:
    return os.environ.get("DEPLOY_SAFETY_DASHBOARD_BACKEND", "sqlite")


def screenshot_dir() -> Path:
    base = os.environ.get("DEPLOY_SAFETY_DASHBOARD_OUT") or str(
        REPO / "target" / "dashboard-screenshots"
    )
    path = Path(base) / backend()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str

    def json(self):
        return json.loads(self.text) if self.text else None


def http_request(
    url: str,
    method: str = "GET",
    *,
    body=None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Response:
    """One HTTP request with the standard library; never follows redirects."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == "127.0.0.1", f"only loopback is ever contacted: {url}"
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    all_headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request(method, path, body=data, headers=all_headers)
        answer = connection.getresponse()
        text = answer.read().decode("utf-8", "replace")
        return Response(
            answer.status, {k.lower(): v for k, v in answer.getheaders()}, text
        )
    finally:
        connection.close()


@dataclass
class Server:
    """A running `deploy-safety serve` with its own database."""

    url: str
    database_url: str
    workdir: Path
    admin_token: str
    process: subprocess.Popen
    stdout_lines: list[str] = field(default_factory=list)
    config_path: Path | None = None  # the settings file given as --config, if any

    def api(self, method: str, path: str, *, token: str | None = None, body=None,
            headers: dict[str, str] | None = None) -> Response:
        return http_request(self.url + API + path, method, body=body, token=token,
                            headers=headers)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """The binary's CLI on this server's database (and settings file, if it has one)."""
        command = [str(_binary()), *args, "--database-url", self.database_url]
        if self.config_path is not None:
            command += ["--config", str(self.config_path)]
        return subprocess.run(
            command, cwd=self.workdir, env=_clean_env(), capture_output=True, text=True,
            timeout=60,
        )

    def create_token(self, name: str, role: str) -> str:
        """`deploy-safety token create` directly on the database; returns the token."""
        out = self.cli("token", "create", "--name", name, "--role", role)
        assert out.returncode == 0, f"token create failed: {out.stderr}"
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ds_"), out.stdout
        return lines[0]

    def revoke_token(self, token: str) -> None:
        """`deploy-safety token revoke --id <id>` directly on the database (one token)."""
        token_id = token_id_of(token)
        out = self.cli("token", "revoke", "--id", token_id)
        assert out.returncode == 0, f"token revoke failed: {out.stdout} {out.stderr}"


def token_id_of(token: str) -> str:
    """A static token's id: the part between `ds_` and the dot."""
    assert token.startswith("ds_") and "." in token, "not a static token"
    return token.removeprefix("ds_").split(".", 1)[0]


def _clean_env() -> dict[str, str]:
    """The caller's environment without any DEPLOY_SAFETY_* setting (no probes, webhooks,
    Prometheus or settings of the developer's own reach the server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_SAFETY_")}
    env["DEPLOY_SAFETY_LOG"] = "warn"
    return env


def _postgres_schema(base: str, schema: str, sql: str) -> None:
    out = subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", base, "-c", sql],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, f"psql failed ({sql}): {out.stderr}"


_modules = 0


@contextmanager
def start_server(settings: str | None = None):
    """Runs `deploy-safety serve` with a fresh database (SQLite, or a fresh PostgreSQL schema)
    on a port of its choosing on 127.0.0.1, until the block ends. `settings` is the text of a
    TOML settings file (docs/configuration.md), given to the server as `--config FILE`."""
    global _modules
    _modules += 1
    binary = _binary()
    assert binary.is_file(), f"no deploy-safety binary at {binary} (cargo build -p deploy-safety)"
    workdir = Path(tempfile.mkdtemp(prefix="deploy-safety-dashboard-"))
    schema = None
    if backend() == "postgres":
        base = os.environ.get("DEPLOY_SAFETY_TEST_POSTGRES_URL")
        assert base, "the postgres backend needs DEPLOY_SAFETY_TEST_POSTGRES_URL"
        assert shutil.which("psql"), "the postgres backend needs psql to make a fresh schema"
        schema = f"ds_dashboard_{os.getpid()}_{_modules}"
        _postgres_schema(base, schema, f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        separator = "&" if "?" in base else "?"
        database_url = f"{base}{separator}options=-c%20search_path%3D{schema}"
    else:
        database_url = f"sqlite://{workdir}/deploy-safety.db"

    config_path = None
    command = [str(binary), "serve", "--listen", "127.0.0.1:0", "--database-url", database_url]
    if settings is not None:
        config_path = workdir / "settings.toml"
        config_path.write_text(settings)
        command += ["--config", str(config_path)]
    stderr = open(workdir / "stderr", "w")
    process = subprocess.Popen(
        command,
        cwd=workdir, env=_clean_env(), stdout=subprocess.PIPE, stderr=stderr, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def read_stdout():
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read_stdout, daemon=True).start()
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    url = None
    admin = None
    try:
        while url is None:
            left = deadline - time.monotonic()
            assert left > 0, f"the server did not report its address in time: {seen}"
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                process.wait(timeout=10)
                raise AssertionError(
                    f"the server exited ({process.returncode}): "
                    f"{(workdir / 'stderr').read_text()}"
                )
            seen.append(line)
            if line.startswith("ds_"):
                admin = line.strip()
            if line.startswith("deploy-safety listening on "):
                url = line.removeprefix("deploy-safety listening on ").strip()
        assert url.startswith("http://127.0.0.1:"), url
        assert admin, f"no bootstrap token on the server's stdout: {seen}"
        running = Server(url=url, database_url=database_url, workdir=workdir,
                         admin_token=admin, process=process, stdout_lines=seen,
                         config_path=config_path)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()
        if schema is not None:
            _postgres_schema(os.environ["DEPLOY_SAFETY_TEST_POSTGRES_URL"], schema,
                             f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    """A fresh server per test module, on a port of its choosing on 127.0.0.1."""
    with start_server() as running:
        yield running


@dataclass
class Tokens:
    admin: str      # the bootstrap token: principal "admin", security-team
    developer: str  # principal "alice", developer
    eng_lead: str   # principal "erin", eng-lead


@pytest.fixture(scope="module")
def tokens(server: Server) -> Tokens:
    return Tokens(
        admin=server.admin_token,
        developer=server.create_token("alice", "developer"),
        eng_lead=server.create_token("erin", "eng-lead"),
    )


@pytest.fixture(scope="session")
def browser():
    executable = os.environ.get("DEPLOY_SAFETY_CHROMIUM", "/usr/bin/chromium")
    assert Path(executable).is_file(), f"no Chromium at {executable}"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


class _OpenedPage:
    """A browser context with one page, and what its console said."""

    def __init__(self, browser: Browser, server: Server, viewport: dict[str, int]):
        self.context = browser.new_context(base_url=server.url, viewport=viewport)
        self.context.set_default_timeout(EXPECT_TIMEOUT_MS)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def close(self, request, name: str) -> None:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            try:
                self.page.screenshot(path=str(screenshot_dir() / f"{name}-failed.png"),
                                     full_page=True)
            except Exception as error:  # a crashed page: the failure itself is reported
                print(f"no failure screenshot: {error}")
            print(f"page URL at failure ({name}): {self.page.url}")
            if self.console:
                print(f"browser console ({name}):\n  " + "\n  ".join(self.console))
        self.context.close()


@pytest.fixture
def page(request, browser: Browser, server: Server):
    """A fresh browser context (no cookies) and page per test. On failure the page is saved as
    `<test>-failed.png` next to the scenarios' screenshots."""
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    opened = _OpenedPage(browser, server, {"width": 1280, "height": 900})
    yield opened.page
    opened.close(request, request.node.name.removeprefix("test_"))


@pytest.fixture
def new_page(request, browser: Browser):
    """new_page(server, "label", viewport=...) opens another fresh browser context (no
    cookies) and page on any server, e.g. a second person, or a server with its own settings.
    Closed at the end of the test; on failure each is saved as `<test>-<label>-failed.png`."""
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    opened: list[tuple[_OpenedPage, str]] = []

    def open_page(target: Server, label: str, *,
                  viewport: dict[str, int] | None = None) -> Page:
        one = _OpenedPage(browser, target, viewport or {"width": 1280, "height": 900})
        opened.append((one, label))
        return one.page

    yield open_page
    name = request.node.name.removeprefix("test_")
    for one, label in opened:
        one.close(request, f"{name}-{label}")


@pytest.fixture
def screenshot():
    """screenshot(page, "overview") saves `overview.png` (full page) in the backend's folder."""

    def save(target: Page, name: str) -> Path:
        path = screenshot_dir() / f"{name}.png"
        target.screenshot(path=str(path), full_page=True)
        return path

    return save
