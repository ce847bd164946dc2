"""Truthful status: the time left from each series' measured time per image, the worker's state in words."""

from __future__ import annotations

import pytest

from core.store import JobRow, Store
from core.store.jobs import ModelProgress


def job(progress: dict[str, tuple[int, int]], *, started: float | None = None, done_at_start: int = 0) -> JobRow:
    return JobRow(
        "r", "running", 1, {}, "", "", started_at=started, done_at_start=done_at_start,
        models={m: ModelProgress(done=d, total=t) for m, (d, t) in progress.items()},
    )  # fmt: skip


NOW = 1_000.0
TIME_LEFT = {
    # progress, ms per image, started (rate), expected seconds (hand-worked)
    "two models measured": (
        {"frcnn": (4, 10), "ssd": (0, 10)},
        {"frcnn": 2000.0, "ssd": 100.0},
        None,
        6 * 2 + 10 * 0.1,
    ),
    "done: nothing left": ({"frcnn": (10, 10)}, {"frcnn": 2000.0}, None, 0.0),
    # 4 records in 40 s: 0.1 per second; ssd's 10 pairs at that rate = 100 s, frcnn's 6 x 2 s = 12 s
    "unmeasured series: the rate": ({"frcnn": (4, 10), "ssd": (0, 10)}, {"frcnn": 2000.0}, NOW - 40, 12 + 100.0),
    "nothing measured, no rate yet": ({"frcnn": (0, 10)}, {}, None, None),
}


@pytest.mark.parametrize(("progress", "ms", "started", "expected"), TIME_LEFT.values(), ids=TIME_LEFT.keys())
def test_time_left_comes_from_the_measured_time_per_image_of_each_series(progress, ms, started, expected):
    left = job(progress, started=started).time_left_s(ms, now=NOW)
    assert left == (None if expected is None else pytest.approx(expected))


def test_measured_ms_is_the_runs_own_mean_else_the_series_latest_records(tmp_path):
    from core.records import RunInfo
    from tests.test_store_migrations import result

    with Store(tmp_path / "s") as store:
        for run_id in ("old", "new"):
            store.start_run(RunInfo(run_id, "2026-01-01T00:00:00+00:00", {}))
        store.add_result("old", result(0, "ssd"), threshold=0.5, created_at="t")  # 1 + 10 + 0.5 ms
        store.add_result("new", result(0, "frcnn"), threshold=0.5, created_at="t")
        store.add_result("new", result(1, "frcnn", error="bad file"), threshold=0.5, created_at="t")  # not timed
        assert store.measured_ms("new", ["frcnn", "ssd", "never"]) == {"frcnn": 11.5, "ssd": 11.5}


def test_worker_status_in_words(tmp_path):
    from dashboard.live import worker_status

    with Store(tmp_path / "s") as store:
        assert worker_status(store, []).startswith("No worker running yet: pressing Run starts one")
        run_id = store.submit_job({"images": []}, settings={"models": ["ssd"]}, name="my run")
        queued = store.jobs()
        assert worker_status(store, queued) == "Starting a worker for the queued run..."
        store.register_worker("vm:10913")
        store.claim_job("vm:10913")
        store.beat(run_id, "vm:10913")
        text = worker_status(store, store.jobs())
        assert text.startswith("Worker busy (process ") and "running my run, 0 of 0 done." in text
        assert "vm:10913" not in text
        store.end_job(run_id, "finished")
        store.beat(None, "vm:10913")
        assert worker_status(store, store.jobs()).startswith("Worker ready (process ")
