"""Browser end-to-end harness: a real ``streamlit run`` server and headless Debian Chromium driven by Playwright.

Every test under tests/e2e is marked ``e2e`` (deselect with ``-m "not e2e"``). Without /usr/bin/chromium (or the
playwright package) the tests are skipped, except under ``CI=true``, where they fail: CI must run them.

``DETLENS_E2E_APP`` overrides the app script (default ``dashboard/app.py``, relative to the repository root); it exists
to check this harness against a throwaway script. Artifacts (server log, screenshots of failed tests) go to
``test-artifacts/``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.config import JOB_HEARTBEAT_S
from tests.e2e import serving
from tests.e2e.ui import settle

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
E2E_DIR = Path(__file__).resolve().parent
# The heartbeat window of the e2e server's jobs (DETLENS_JOB_STALE_S): a running job whose heartbeat is older than this
# is reaped as `interrupted` by the page that polls it (dashboard.live calls Store.reap_stale every second). The worker
# beats every JOB_HEARTBEAT_S (2 s) from a thread of its own, but it runs at niceness +10 on a 2-core machine that the
# Streamlit server, Chromium, this test process and other suites share: under CFS a nice +10 process weighs ~1/10 of a
# nice-0 one, so its beat can be seconds late, and a beat that meets another writer waits up to STORE_BUSY_TIMEOUT_S
# (10 s) for SQLite's lock. A window of 3 beats (the 6 s used before) could reap a live job mid-run; 15 beats (30 s,
# above production's 20 s because this machine is busier than a deployment) leaves room for a late beat plus a full
# busy timeout. The one test that needs a job reaped (tests/e2e/test_jobs.py) kills its worker, waits until that
# process is gone, and then waits for the window to pass: it pays the window once instead of every test risking it.
JOB_STALE_S = 15 * JOB_HEARTBEAT_S


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no", "off"}


def _skip_or_fail(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason} (CI is set: browser tests must run)", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can tell whether their test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session", autouse=True)
def chromium_executable() -> Path:
    """Checked first (autouse), so a missing browser skips before a server is started."""
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        _skip_or_fail(f"{CHROMIUM} is missing: install it with `apt-get install chromium`")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _skip_or_fail(f"playwright is not installed ({exc}): pip install -r requirements-dev.txt")
    return CHROMIUM


@pytest.fixture(scope="session")
def job_stale_s() -> float:
    """The e2e server's job heartbeat window in seconds (JOB_STALE_S): how long a killed worker's job stays `running`."""
    return JOB_STALE_S


@pytest.fixture(scope="session")
def server_store(torch_home: Path) -> Path:
    """The run store folder of the e2e server (tests read the jobs and records it writes)."""
    return torch_home / "e2e-store"


@pytest.fixture(scope="session")
def streamlit_server(artifacts_dir: Path, torch_home: Path, server_store: Path) -> Iterator[str]:
    """Start ``streamlit run`` on a free local port; yield its base URL; stop it and keep its log."""
    app = Path(os.environ.get("DETLENS_E2E_APP") or "dashboard/app.py")
    app_path = app if app.is_absolute() else REPO_ROOT / app
    if not app_path.is_file():
        pytest.fail(f"app script {app_path} does not exist", pytrace=False)
    args = [
        "--server.maxUploadSize", "1",  # MB: test_server.py sends 2-3 MB to check the limit (gallery photos < 150 KB)
        "--client.showErrorDetails", "full",  # config.toml says "type"; a failing test should say what went wrong
    ]  # fmt: skip
    # the dashboard starts its worker, as in production; it gives up quickly when idle and is stopped at the end
    env = {
        "TORCH_HOME": str(torch_home),
        "DETLENS_WORKER_AUTOSTART": "1",
        "DETLENS_WORKER_IDLE_EXIT_S": "60",
        "DETLENS_JOB_STALE_S": str(JOB_STALE_S),  # see JOB_STALE_S: never short enough to reap a live job
    }
    try:
        with serving.streamlit(server_store, artifacts_dir / "streamlit.log", app=app_path, args=args, env=env) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        from tests.factories import stop_workers_of

        stop_workers_of(server_store)


@pytest.fixture(scope="session")
def playwright_instance(chromium_executable: Path) -> Iterator[object]:
    """One Playwright for the session: a second `sync_playwright()` while one runs fails (its event loop is taken),
    so every browser of the suite is launched from this one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_instance, chromium_executable: Path) -> Iterator[object]:
    browser = playwright_instance.chromium.launch(
        executable_path=str(chromium_executable), headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def browser_page(browser, artifacts_dir: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh page (own context: no cookies or storage shared between tests); a screenshot is kept if the test fails.

    Browser console errors are collected on ``page.console_errors``.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.console_errors = []
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.nodeid)
            try:
                page.screenshot(path=str(artifacts_dir / f"{name}.png"), full_page=True)
            except Exception as exc:  # a screenshot is a bonus: never hide the real failure
                print(f"screenshot failed: {exc}", file=sys.stderr)
        context.close()


@pytest.fixture
def wait_for_app() -> Callable[..., None]:
    """``wait_for_app(page)``: wait until the page is connected to the server and the script run has finished."""

    return settle
