"""Runs outlive the page, in headless Chromium against `streamlit run` (which starts its own worker): a gallery run
survives a page change, a reload, a closed browser context and a new one; a worker killed with `kill -9` mid-run
leaves the job interrupted, and Resume completes it with every (image, model) pair exactly once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.config import HEADLINE_MODELS
from core.store import Store
from tests.e2e.test_dashboard import assert_no_exception
from tests.e2e.ui import choose

RUN_TIMEOUT_S = 500


_STORE: list[Path] = []


def _store() -> Store:
    return Store(_STORE[0])


@pytest.fixture(autouse=True)
def _server_store(server_store: Path) -> None:
    _STORE[:] = [server_store]


def start_gallery_run(page, base_url: str, wait_for_app) -> tuple[str, float]:
    """The headline pair, untrained, on the whole bundled gallery; returns the new job's run id and the click time."""
    before = {j.run_id for j in _store().jobs(recent=1000)}
    page.goto(f"{base_url}/run", wait_until="domcontentloaded")
    wait_for_app(page)
    for model in HEADLINE_MODELS:
        choose(page, f"Weights: {model}", "untrained")
        wait_for_app(page)
    page.get_by_role("button", name="Run", exact=True).click()
    clicked = time.monotonic()
    deadline = clicked + 60
    while time.monotonic() < deadline:
        new = [j.run_id for j in _store().jobs(recent=1000) if j.run_id not in before]
        if new:
            return new[0], clicked
        time.sleep(0.1)
    raise AssertionError("no job was submitted")


def wait_for(predicate, timeout_s: float = RUN_TIMEOUT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def every_pair_once(run_id: str) -> int:
    inf = _store().load_run(run_id)[0]
    pairs = list(zip(inf["image_id"], inf["model"], strict=True))
    assert len(pairs) == len(set(pairs))
    return len(pairs)


def test_a_gallery_run_survives_page_changes_reloads_and_closed_browsers(streamlit_server, browser, wait_for_app,
                                                                          artifacts_dir):  # fmt: skip
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    run_id, clicked = start_gallery_run(page, streamlit_server, wait_for_app)
    total = _store().job(run_id).total
    # the first record shown live on the Run page (the panel polls the store)
    page.get_by_text(": 1 of ", exact=False).first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
    first_shown = time.monotonic() - clicked
    print(f"\nRun click -> first record shown live: {first_shown:.1f} s")
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Gallery").click()
    page.get_by_role("heading", name="Gallery").first.wait_for(timeout=60_000)
    page.reload(wait_until="domcontentloaded")
    wait_for_app(page)
    assert_no_exception(page, artifacts_dir)
    context.close()  # the tab is gone mid-run
    assert _store().job(run_id).status in ("queued", "running")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{streamlit_server}/run?run={run_id}", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_text(f"{_store().run_label(run_id)}: Finished", exact=False).wait_for(timeout=RUN_TIMEOUT_S * 1000)
    assert _store().job(run_id).status == "finished" and every_pair_once(run_id) == total
    page.screenshot(path=str(artifacts_dir / "e2e_job_finished.png"), full_page=True)
    context.close()


def _gone(pid: int) -> bool:
    """Whether process `pid` has exited (absent, or a zombie its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_worker_killed_mid_run_is_resumed_with_every_pair_exactly_once(streamlit_server, browser, wait_for_app,
                                                                         artifacts_dir, job_stale_s):  # fmt: skip
    from core.execution.jobs import submit
    from core.execution.runner import RunSettings
    from core.images import ImageSource, gallery_paths

    # submitted as `core submit` would: the Run page starts (or finds) the worker for it. The Faster R-CNN ResNet50
    # pairs take about a second each on a CPU, so the kill lands mid-run even on a fast, quiet machine (two small
    # models finished all 12 pairs within one 0.2 s poll on CI).
    models = ["ssdlite320_mobilenet_v3_large", "fasterrcnn_resnet50_fpn"]
    images = [ImageSource.from_path(p).hashed() for p in gallery_paths()]
    run_id = submit(_store(), RunSettings(models, "untrained", device="cpu"), images, user="e2e")
    total = _store().job(run_id).total
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{streamlit_server}/run?run={run_id}", wait_until="domcontentloaded")
    wait_for_app(page)
    wait_for(lambda: _store().job(run_id).done >= 2, what="two records")
    pid = int(_store().job(run_id).worker.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _gone(pid), timeout_s=30, what="the killed worker to exit")  # no record can land after this
    done = _store().job(run_id).done
    assert done < total, "the run ended before the worker could be killed: use more images"
    assert _store().job(run_id).status == "running"  # nobody said otherwise yet: only a stale heartbeat will
    resume = page.get_by_role("button", name="Resume", exact=True)
    # the heartbeat goes stale after the window (conftest.JOB_STALE_S), seen by the page, which polls while the job runs
    resume.wait_for(timeout=(job_stale_s + 60) * 1000)
    assert page.get_by_text("Interrupted", exact=False).count() >= 1
    wait_for_app(page)
    resume.click()
    page.get_by_text(f"{_store().run_label(run_id)}: Finished", exact=False).wait_for(timeout=RUN_TIMEOUT_S * 1000)
    assert every_pair_once(run_id) == total and _store().job(run_id).status == "finished"
    assert_no_exception(page, artifacts_dir)
    context.close()
