"""Jobs in the run store: the schema migration, states, claiming under a race, cancel, resume, interruption,
submission order, and the checks that refuse a job before anything is stored."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from core.config import GALLERY_DIR, STORE_DB_NAME
from core.execution import jobs
from core.execution.runner import RunSettings
from core.images import ImageSource
from core.inference.devices import DeviceError
from core.inference.models import UnknownModelError
from core.inference.weights import WeightsError
from core.store import Store, StoreError
from tests.factories import run_pending
from tests.test_store_migrations import RUN, result, v1_store

SMALL = "ssdlite320_mobilenet_v3_large"


def settings(models=(SMALL,), **kw) -> RunSettings:
    return RunSettings(list(models), kw.pop("default_weights", "untrained"), device="cpu", warmup=0, **kw)


def sources(*names: str) -> list[ImageSource]:
    return [ImageSource.from_path(GALLERY_DIR / n).hashed() for n in names]


def queued(store: Store, names=("cat.jpg",), **kw) -> str:
    return jobs.submit(store, settings(**kw), sources(*names), user="ana")


def status(store: Store, run_id: str) -> str:
    return store.job(run_id).status


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store") as s:
        yield s


def force(store: Store, run_id: str, new_status: str) -> None:
    """Put a job in a state directly (what a worker or a dead worker would have left)."""
    with store._write() as conn:
        conn.execute("UPDATE runs SET status = ? WHERE run_id = ?", (new_status, run_id))


# --- migration ------------------------------------------------------------------------------------------------------


def test_a_store_of_the_previous_schema_keeps_its_runs_and_takes_the_new_states(tmp_path):
    path = v1_store(tmp_path / "s", [(result(0), "2026-01-01T00:00:00+00:00"), (result(1), "2026-01-01")])
    with Store(path, create=False) as s:
        assert s.list_runs().loc[0, "status"] == "finished" and len(s.load_run(RUN)[0]) == 2
        force(s, RUN, "interrupted")  # the CHECK now allows the job states
        assert s.list_runs().loc[0, "status"] == "interrupted"
        with pytest.raises(sqlite3.IntegrityError):
            force(s, RUN, "exploded")
        s.delete_run(RUN)  # foreign keys survived the rebuild: the records go with their run
    conn = sqlite3.connect(path / STORE_DB_NAME)
    assert conn.execute("SELECT COUNT(*) FROM inferences").fetchone() == (0,)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


# --- states ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "after", "cancel_flag"),
    [("queued", "cancelled", False), ("interrupted", "cancelled", False), ("running", "running", True)],
)
def test_cancel_ends_a_waiting_job_at_once_and_asks_a_running_one_to_stop(store, start, after, cancel_flag):
    run_id = queued(store)
    force(store, run_id, start)
    assert store.cancel_job(run_id) == after
    assert status(store, run_id) == after and store.cancel_requested(run_id) is cancel_flag


@pytest.mark.parametrize("ended", ["finished", "failed", "cancelled"])
def test_an_ended_job_cannot_be_cancelled(store, ended):
    run_id = queued(store)
    force(store, run_id, ended)
    with pytest.raises(StoreError, match="already ended"):
        store.cancel_job(run_id)


@pytest.mark.parametrize(("start", "ok"), [("interrupted", True), ("cancelled", True), ("failed", True),
                                           ("finished", False), ("running", False), ("queued", False)])  # fmt: skip
def test_resume_requeues_only_jobs_that_stopped_early(store, start, ok):
    run_id = queued(store)
    with store._write() as conn:
        conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE run_id = ?", (time.time(), run_id))
    force(store, run_id, start)
    if ok:
        store.resume_job(run_id)
        assert status(store, run_id) == "queued"
    else:
        with pytest.raises(StoreError, match="can be resumed"):
            store.resume_job(run_id)
        assert status(store, run_id) == start


def test_a_running_job_whose_heartbeat_is_stale_becomes_interrupted(store):
    run_id = queued(store)
    job = store.claim_job("host:1")
    assert job.run_id == run_id and status(store, run_id) == "running"
    assert store.reap_stale() == []  # fresh heartbeat
    with store._write() as conn:
        conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE run_id = ?", (time.time() - 3600, run_id))
    assert store.reap_stale() == [run_id] and status(store, run_id) == "interrupted"
    assert "resume" in store.job(run_id).message


def test_a_run_that_is_not_a_job_is_said_so(store, tmp_path):
    from core.execution.runner import run

    output = run(sources("cat.jpg"), settings(), store=store)
    with pytest.raises(StoreError, match="not a job"):
        store.cancel_job(output.info.run_id)


# --- claiming -------------------------------------------------------------------------------------------------------


def test_two_workers_racing_for_one_job_never_both_get_it(tmp_path):
    path = tmp_path / "store"
    with Store(path) as s:
        run_id = queued(s)
    barrier = threading.Barrier(8)
    got: list[str | None] = []

    def worker(i: int) -> None:
        with Store(path) as own:  # own connection, as another process would have
            barrier.wait()
            job = own.claim_job(f"host:{i}")
            got.append(job.run_id if job else None)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got.count(run_id) == 1 and got.count(None) == 7


def test_two_users_submitting_at_once_get_two_jobs_run_in_order_each_with_its_own_records(store):
    barrier = threading.Barrier(2)
    ids: dict[str, str] = {}

    def submit(user: str, name: str) -> None:
        barrier.wait()
        ids[user] = jobs.submit(store, settings(), sources(name), user=user)

    threads = [threading.Thread(target=submit, args=a) for a in (("ana", "cat.jpg"), ("bo", "coffee.jpg"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids.values())) == 2
    by_seq = sorted(ids.values(), key=lambda r: store.job(r).seq)
    assert run_pending(store) == by_seq
    for user, name in (("ana", "cat.jpg"), ("bo", "coffee.jpg")):
        inf = store.load_run(ids[user])[0]
        assert inf["image_name"].tolist() == [name] and store.job(ids[user]).submitted_by == user


# --- running, cancel, resume ----------------------------------------------------------------------------------------


def _cancel_after_first_record(store: Store, monkeypatch) -> None:
    real = store.add_result

    def add_then_cancel(run_id, result, **kw):
        real(run_id, result, **kw)
        if store.job(run_id).done == 1:
            store.cancel_job(run_id)

    monkeypatch.setattr(store, "add_result", add_then_cancel)


def test_cancel_stops_after_the_image_in_flight_and_resume_runs_only_the_missing_pairs(store, monkeypatch):
    models = (SMALL, "fasterrcnn_mobilenet_v3_large_320_fpn")
    run_id = queued(store, ("cat.jpg", "coffee.jpg", "rocket.jpg"), models=models)
    _cancel_after_first_record(store, monkeypatch)
    assert run_pending(store) == [run_id]
    job = store.job(run_id)
    assert job.status == "cancelled" and job.done == 1 and job.total == 6
    first = store.load_run(run_id)[0]
    assert first["error"].tolist() == [""]  # the record is kept and usable
    monkeypatch.undo()
    store.resume_job(run_id)
    assert run_pending(store) == [run_id]
    inf = store.load_run(run_id)[0]
    pairs = list(zip(inf["image_id"], inf["model"], strict=True))
    assert len(pairs) == len(set(pairs)) == 6 and status(store, run_id) == "finished"
    kept = inf[(inf["image_id"] == first.loc[0, "image_id"]) & (inf["model"] == first.loc[0, "model"])]
    assert kept["created_at"].tolist() == first["created_at"].tolist()  # not measured again
    assert set(store.load_run(run_id)[2].settings["models"]) <= set(models)


def test_a_worker_stopped_mid_run_leaves_the_job_interrupted_and_resumable(store):
    run_id = queued(store, ("cat.jpg", "coffee.jpg"))
    job = store.claim_job("host:1")
    stop = lambda: store.job(run_id).done >= 1  # noqa: E731 - shut down once the first image is in
    assert jobs.run_job(store, job, stop=stop) == "interrupted"
    assert store.job(run_id).done == 1
    store.resume_job(run_id)
    run_pending(store)
    assert store.job(run_id).done == 2 and status(store, run_id) == "finished"


def test_images_that_fail_inside_a_job_stay_per_image_errors(store):
    bad = ImageSource.from_bytes("notes.png", b"<html>not an image</html>")
    empty = ImageSource.from_bytes("empty.png", b"")
    run_id = jobs.submit(store, settings(), [*sources("cat.jpg"), bad, empty])
    run_pending(store)
    inf = store.load_run(run_id)[0].set_index("image_name")
    assert inf.loc["cat.jpg", "error"] == "" and inf.loc["notes.png", "error"] and inf.loc["empty.png", "error"]
    assert status(store, run_id) == "finished" and store.job(run_id).errors == 2


def test_the_worker_loop_runs_the_queue_and_exits_when_idle(store):
    ids = [queued(store), queued(store, ("coffee.jpg",))]
    assert jobs.serve(store, idle_exit=0, log=lambda _: None) == 2
    assert [status(store, r) for r in ids] == ["finished", "finished"] and store.live_workers() == []


# --- refused up front -----------------------------------------------------------------------------------------------


def _bad_checkpoint(tmp_path: Path) -> str:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    return str(path)


@pytest.mark.parametrize(
    ("make", "error", "phrase"),
    [
        (lambda tmp: settings(("no_such_model",)), UnknownModelError, "no_such_model"),
        (lambda tmp: RunSettings([SMALL], "untrained", device="cuda"), DeviceError, "CUDA"),
        (lambda tmp: settings(default_weights="default"), WeightsError, "ssdlite320_mobilenet_v3_large_coco"),
        (lambda tmp: settings(default_weights=_bad_checkpoint(tmp)), WeightsError, "broken.pth"),
    ],
)
def test_a_job_that_cannot_start_is_refused_and_nothing_is_stored(store, tmp_path, monkeypatch, make, error, phrase):
    import torch

    if "cuda" in phrase.lower() and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("DETLENS_OFFLINE", "1")
    with pytest.raises(error, match=phrase):
        jobs.submit(store, make(tmp_path), sources("cat.jpg"))
    assert store.list_runs().empty and store.jobs() == []


def test_an_image_that_is_not_in_the_store_is_refused(store):
    spec = {"images": [{"image_id": "f" * 64, "name": "ghost.jpg"}], "todo": {SMALL: [0]}}
    with pytest.raises(StoreError, match="ghost.jpg"):
        store.submit_job(spec, settings={})
    assert store.list_runs().empty


# --- a run its own process holds: `detect --store` (jobs.run_here) --------------------------------------------------


class Boom(RuntimeError):
    pass


def _raise_after(n: int, exc: type[BaseException]):
    def on_result(result, done, total):
        if done == n:
            raise exc("stop here")

    return on_result


@pytest.mark.parametrize(
    ("exc", "ended", "message"),
    [
        (KeyboardInterrupt, "interrupted", "detect was stopped: resume it"),
        (Boom, "failed", "stop here"),
    ],
)
def test_a_run_held_by_its_process_ends_interrupted_on_ctrl_c_or_failed_and_resumes_the_missing_pairs(
    store, exc, ended, message
):
    from core.execution.runner import plan

    images = sources("cat.jpg", "coffee.jpg", "astronaut.jpg")
    planned = plan(settings(), images)
    with pytest.raises(exc):
        jobs.run_here(store, planned, images, user="ana", on_result=_raise_after(2, exc))
    (job,) = store.jobs()
    assert (job.status, job.message, job.worker, job.submitted_by) == (ended, message, jobs.worker_name(), "ana")
    done = job.done
    assert 1 <= done < 3
    store.resume_job(job.run_id)
    assert run_pending(store) == [job.run_id]
    inf = store.load_run(job.run_id)[0]
    pairs = list(zip(inf["image_id"], inf["model"], strict=True))
    assert len(pairs) == len(set(pairs)) == 3 and status(store, job.run_id) == "finished"


def test_a_run_held_by_its_process_is_a_claimed_job_no_worker_can_take(store):
    from core.execution.runner import plan

    images = sources("cat.jpg")
    seen: list[tuple[str, str, object]] = []

    def on_result(result, done, total):  # mid-run: what `core jobs` and another worker see
        (job,) = store.jobs()
        seen.append((job.status, job.worker, store.claim_job("other:1")))

    out = jobs.run_here(store, plan(settings(), images), images, on_result=on_result)
    assert seen == [("running", jobs.worker_name(), None)]
    assert status(store, out.info.run_id) == "finished" and store.live_workers() == []


def test_a_run_held_by_its_process_whose_model_does_not_load_keeps_nothing(store, tmp_path, monkeypatch):
    from core.execution.runner import plan

    monkeypatch.setenv("DETLENS_OFFLINE", "1")
    images = sources("cat.jpg")
    with pytest.raises(WeightsError, match="broken.pth"):
        jobs.run_here(store, plan(settings(default_weights=_bad_checkpoint(tmp_path)), images), images)
    assert store.list_runs().empty and store.jobs() == []


@pytest.mark.slow
@pytest.mark.parametrize("policy", [None, "PASSIVE"])
def test_a_worker_records_the_threads_wait_policy_and_niceness_its_model_calls_ran_with(store, policy):
    """The figures of a job depend on them: the run's environment says what the worker process really had."""
    import os
    import subprocess
    import sys

    run_id = queued(store)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "DETLENS_THREADS")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    before = os.getpriority(os.PRIO_PROCESS, 0)
    subprocess.run(
        [sys.executable, "-m", "core", "worker", "--store", str(store.path), "--threads", "1", "--nice", "3",
         "--idle-exit", "0"],
        cwd=Path(__file__).resolve().parent.parent, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert status(store, run_id) == "finished"
    environment = store.load_run(run_id)[2].environment
    assert environment["threads"] == 1
    assert environment["nice"] == min(before + 3, 19)
    assert environment["omp_wait_policy"] == (policy or "unset (the OpenMP runtime's default)")
    assert environment["parallel_backend"]
