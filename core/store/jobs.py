"""Jobs: a run that a worker process executes. Submit, claim, heartbeat, progress, cancel, resume, interruption.

A job is a run (one row of `runs`, whose `status` is the job's state) plus one row of `jobs` (its spec, who submitted it,
its place in the queue, the worker holding it and that worker's heartbeat, a cancel flag). States:

    queued -> running -> finished | failed | cancelled
                     \\-> interrupted   (the heartbeat went stale: the worker died, the machine restarted)
    interrupted | cancelled | failed --resume--> queued  (only the missing (image, model) pairs run again)

Claiming takes the write lock first (`BEGIN IMMEDIATE`), picks the oldest queued job and flips it to `running` in the
same transaction, so two workers never take the same job. Progress is read from the records themselves (one indexed
GROUP BY), so it can never disagree with what is stored. Times in `jobs` are epoch seconds (heartbeats are compared
with the clock); `runs` keeps its ISO timestamps.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.config import JOB_STALE_AFTER_S
from core.records import RunInfo, new_run_id, now_iso, run_name
from core.store.common import (
    ACTIVE_STATUSES,
    RESUMABLE_STATUSES,
    RUN_NAME_MAX,
    StoreError,
    check_run_id,
    dumps_json,
    loads_json,
)
from core.store.connection import StoreBase


@dataclass
class ModelProgress:
    done: int = 0
    total: int = 0
    errors: int = 0


@dataclass
class JobRow:
    """A job as the dashboard and `core jobs` show it. `done`/`errors` count stored records (failed ones included)."""

    run_id: str
    status: str
    seq: int
    spec: dict
    submitted_by: str
    submitted_at: str
    worker: str = ""
    started_at: float | None = None
    heartbeat_at: float | None = None
    done_at_start: int = 0
    cancel_requested: bool = False
    message: str = ""
    finished_at: str = ""
    models: dict[str, ModelProgress] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(p.done for p in self.models.values())

    @property
    def total(self) -> int:
        return sum(p.total for p in self.models.values())

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.models.values())

    @property
    def engine(self) -> str:
        """Where the job runs: `local` (the worker's own process), `ray` (a Ray started by the worker) or
        `ray@HOST:PORT` (a cluster)."""
        if self.spec.get("engine") != "ray":
            return "local"
        address = (self.spec.get("ray") or {}).get("address")
        return f"ray@{address}" if address else "ray"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def rate(self, now: float | None = None) -> float:
        """(image, model) records per second in the current attempt (0 until one lands)."""
        if self.status != "running" or not self.started_at:
            return 0.0
        elapsed = (now or time.time()) - self.started_at
        new = self.done - self.done_at_start
        return new / elapsed if elapsed > 0 and new > 0 else 0.0

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the current rate (None until there is a rate)."""
        rate = self.rate(now)
        return (self.total - self.done) / rate if rate else None

    def time_left_s(self, ms_per_image: Mapping[str, float], now: float | None = None) -> float | None:
        """Seconds left: each series' (image, model) pairs still to run times its measured time per image
        (`ms_per_image`: series -> ms, e.g. `Store.measured_ms`); series not measured yet fall back to the current
        rate; None while neither is known."""
        left, unmeasured = 0.0, 0
        for series, p in self.models.items():
            todo = max(0, p.total - p.done)
            ms = ms_per_image.get(series)
            if ms is not None and ms > 0:
                left += todo * ms / 1000.0
            else:
                unmeasured += todo
        if unmeasured:
            rate = self.rate(now)
            if not rate:
                return None
            left += unmeasured / rate
        return left

    def as_dict(self, now: float | None = None) -> dict[str, object]:
        """A JSON-ready summary (`core jobs --json`)."""
        return {
            "run_id": self.run_id, "status": self.status, "seq": self.seq, "submitted_by": self.submitted_by,
            "submitted_at": self.submitted_at, "finished_at": self.finished_at, "worker": self.worker,
            "done": self.done, "total": self.total, "errors": self.errors,
            "models": {m: vars(p) for m, p in self.models.items()},
            "images_per_s": round(self.rate(now), 3), "eta_s": self.eta_s(now), "message": self.message,
            "cancel_requested": self.cancel_requested, "engine": self.engine, "ray": self.spec.get("ray"),
        }  # fmt: skip


_JOB_SELECT = (
    "SELECT j.run_id, r.status, j.seq, j.spec, j.submitted_by, j.submitted_at, j.worker, j.started_at, "
    "j.heartbeat_at, j.done_at_start, j.cancel_requested, j.message, COALESCE(r.finished_at, '') "
    "FROM jobs j JOIN runs r USING (run_id)"
)


def worker_name() -> str:
    """host:pid of this process (what a job's `worker` column holds)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobsMixin(StoreBase):
    """The `jobs` and `workers` tables and the run status changes a job goes through."""

    # -- submit ---------------------------------------------------------------------------------------------------

    def submit_job(
        self,
        spec: dict,
        *,
        settings: dict,
        user: str = "",
        run_id: str | None = None,
        worker: str | None = None,
        name: str = "",
    ) -> str:
        """Queue a job: its run (status `queued`, `settings` as asked), its images listed in the run, its spec; one
        transaction. `spec["images"]` lists {"image_id", "name"}; each id must be in the store's images already
        (`put_image`), else StoreError and nothing is written. Returns the run id.

        `worker`: the job is claimed by that worker in the same transaction (`running`, its heartbeat now), so no
        other worker can take it: `detect --store` runs its own job in its own process this way.

        `name`: the run's readable name; by default its models, image count and date (`core.records.run_name`)."""
        run_id = check_run_id(run_id or new_run_id())
        status = "running" if worker else "queued"
        images = [i for i in spec.get("images", []) if i.get("image_id")]
        try:
            with self._write() as conn:
                known = {r[0] for r in conn.execute("SELECT image_id FROM images")} if images else set()
                missing = [i["name"] for i in images if i["image_id"] not in known]
                if missing:
                    raise StoreError(f"image(s) not in the run store {self.path}: {', '.join(missing[:5])}")
                (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()
                created = now_iso()
                name = " ".join(name.split()) or run_name(
                    settings.get("models", []) or [], len({i["image_id"] for i in images}), created
                )
                conn.execute(
                    "INSERT INTO runs (run_id, created_at, user, settings, environment, status, name) "
                    "VALUES (?, ?, ?, ?, '{}', ?, ?)",
                    (run_id, created, user, dumps_json(settings), status, name[:RUN_NAME_MAX]),
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO run_images (run_id, image_id, name) VALUES (?, ?, ?)",
                    [(run_id, i["image_id"], i["name"]) for i in images],
                )
                now = time.time() if worker else None
                conn.execute(
                    "INSERT INTO jobs (run_id, seq, spec, submitted_by, submitted_at, worker, started_at, heartbeat_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, seq, dumps_json(spec), user, created, worker or "", now, now),
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"run {run_id!r} already exists in {self.path}") from exc
        return run_id

    # -- workers --------------------------------------------------------------------------------------------------

    def claim_job(self, worker: str | None = None) -> JobRow | None:
        """The oldest queued job, now `running` and held by `worker`; None when the queue is empty. Atomic: the
        write lock is taken before the job is chosen, so two workers never get the same one."""
        worker = worker or worker_name()
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "SELECT j.run_id FROM jobs j JOIN runs r USING (run_id) WHERE r.status = 'queued' "
                "ORDER BY j.seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            (run_id,) = row
            (done,) = conn.execute("SELECT COUNT(*) FROM inferences WHERE run_id = ?", (run_id,)).fetchone()
            conn.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?", (run_id,))
            conn.execute(
                "UPDATE jobs SET worker = ?, started_at = ?, heartbeat_at = ?, done_at_start = ?, message = '' "
                "WHERE run_id = ?",
                (worker, now, now, done, run_id),
            )
        return self.job(run_id)

    def beat(self, run_id: str | None, worker: str) -> None:
        """The worker is alive (and, with `run_id`, still on that job)."""
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "UPDATE workers SET heartbeat_at = ?, job = ? WHERE worker_id = ?", (now, run_id or "", worker)
            )
            if run_id:
                conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE run_id = ? AND worker = ?", (now, run_id, worker))

    def register_worker(self, worker: str) -> None:
        host, _, pid = worker.rpartition(":")
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO workers (worker_id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)",
                (worker, host, int(pid or 0), now_iso(), time.time()),
            )

    def unregister_worker(self, worker: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker,))

    def live_workers(self, stale_after: float = JOB_STALE_AFTER_S) -> list[str]:
        """Workers whose heartbeat is recent (a killed one drops out after `stale_after` seconds)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT worker_id FROM workers WHERE heartbeat_at >= ? ORDER BY started_at",
                (time.time() - stale_after,),
            ).fetchall()
        return [r[0] for r in rows]

    def measured_ms(self, run_id: str, series: Sequence[str] = ()) -> dict[str, float]:
        """Mean time per image (total_ms) of each series: in this run where it has records, else in the most recent
        records of the series in any run of the store (at most 200 of them), for the time left of a job."""
        with self._read() as conn:
            found = {
                str(m): float(ms)
                for m, ms in conn.execute(
                    "SELECT model, AVG(total_ms) FROM inferences WHERE run_id = ? AND error = '' "
                    "AND total_ms IS NOT NULL GROUP BY model",
                    (run_id,),
                )
                if ms is not None
            }
            for name in series:
                if name in found:
                    continue
                (ms,) = conn.execute(
                    "SELECT AVG(total_ms) FROM (SELECT total_ms FROM inferences WHERE model = ? AND error = '' "
                    "AND total_ms IS NOT NULL ORDER BY rowid DESC LIMIT 200)",
                    (name,),
                ).fetchone()
                if ms is not None:
                    found[name] = float(ms)
        return found

    def worker_states(self, stale_after: float = JOB_STALE_AFTER_S) -> list[tuple[str, str, int, str]]:
        """Live workers as (host, started_at, pid, job run id or ''), oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT host, started_at, pid, job FROM workers WHERE heartbeat_at >= ? ORDER BY started_at",
                (time.time() - stale_after,),
            ).fetchall()
        return [(str(h), str(s), int(p), str(j or "")) for h, s, p, j in rows]

    def end_job(self, run_id: str, status: str, *, info: RunInfo | None = None, message: str = "") -> None:
        """The worker is done with the job: `finished`, `failed` or `cancelled` (with the runner's final RunInfo)."""
        if status not in ("finished", "failed", "cancelled"):
            raise StoreError(f"a job ends finished, failed or cancelled, not {status!r}")
        with self._write() as conn:
            self._require_job(conn, run_id)
            conn.execute("UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", (status, now_iso(), run_id))
            if info is not None:
                conn.execute(
                    "UPDATE runs SET settings = ?, environment = ? WHERE run_id = ?",
                    (dumps_json(info.settings), dumps_json(info.environment), run_id),
                )
            conn.execute("UPDATE jobs SET message = ?, cancel_requested = 0 WHERE run_id = ?", (message[:500], run_id))

    def interrupt_job(self, run_id: str, message: str) -> None:
        """The worker stopped before the job was done (shut down): `interrupted`, resumable."""
        with self._write() as conn:
            self._require_job(conn, run_id)
            conn.execute(
                "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE run_id = ?", (now_iso(), run_id)
            )
            conn.execute("UPDATE jobs SET message = ? WHERE run_id = ?", (message[:500], run_id))

    def reopen_run(self, info: RunInfo) -> None:
        """A claimed job's run gets its resolved settings and environment (the runner's `start_run` for a job)."""
        with self._write() as conn:
            self._require_run(conn, info.run_id)
            conn.execute(
                "UPDATE runs SET settings = ?, environment = ? WHERE run_id = ?",
                (dumps_json(info.settings), dumps_json(info.environment), info.run_id),
            )

    def set_job_spec(self, run_id: str, spec: dict) -> None:
        """Replace a job's spec (a video job lists its frames once its worker has extracted them: core.execution.videojobs)."""
        with self._write() as conn:
            self._require_job(conn, run_id)
            conn.execute("UPDATE jobs SET spec = ? WHERE run_id = ?", (dumps_json(spec), run_id))

    # -- users ----------------------------------------------------------------------------------------------------

    def cancel_job(self, run_id: str) -> str:
        """Cancel: a queued or interrupted job is `cancelled` at once; a running one is asked to stop after the image
        in flight (its worker then ends it `cancelled`). Returns the status after the call. Records are kept."""
        with self._write() as conn:
            status = self._require_job(conn, run_id)
            if status in ("queued", "interrupted"):
                conn.execute(
                    "UPDATE runs SET status = 'cancelled', finished_at = ? WHERE run_id = ?", (now_iso(), run_id)
                )
                return "cancelled"
            if status == "running":
                conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
                return "running"
        raise StoreError(f"run {run_id} has already ended ({status}): nothing to cancel")

    def cancel_requested(self, run_id: str) -> bool:
        with self._read() as conn:
            row = conn.execute("SELECT cancel_requested FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def resume_job(self, run_id: str) -> None:
        """Queue an interrupted, cancelled or failed job again, at the end of the queue; its worker runs only the
        (image, model) pairs with no record yet, into the same run."""
        self.reap_stale()
        with self._write() as conn:
            status = self._require_job(conn, run_id)
            if status not in RESUMABLE_STATUSES:
                raise StoreError(f"run {run_id} is {status}: only {', '.join(RESUMABLE_STATUSES)} jobs can be resumed")
            (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()
            conn.execute("UPDATE runs SET status = 'queued', finished_at = NULL WHERE run_id = ?", (run_id,))
            conn.execute(
                "UPDATE jobs SET seq = ?, cancel_requested = 0, worker = '', message = '' WHERE run_id = ?",
                (seq, run_id),
            )

    def reap_stale(self, stale_after: float = JOB_STALE_AFTER_S) -> list[str]:
        """Running jobs whose worker stopped beating (killed, machine restarted) become `interrupted`."""
        cutoff = time.time() - stale_after
        with self._write() as conn:
            rows = conn.execute(
                "SELECT j.run_id FROM jobs j JOIN runs r USING (run_id) "
                "WHERE r.status = 'running' AND COALESCE(j.heartbeat_at, 0) < ?",
                (cutoff,),
            ).fetchall()
            ids = [r[0] for r in rows]
            for run_id in ids:
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE run_id = ?", (now_iso(), run_id)
                )
                conn.execute(
                    "UPDATE jobs SET message = 'the worker stopped beating (killed or restarted): resume it' "
                    "WHERE run_id = ?",
                    (run_id,),
                )
        return ids

    # -- reading --------------------------------------------------------------------------------------------------

    def job(self, run_id: str) -> JobRow:
        """One job with its progress; StoreError when the run is not a job."""
        with self._read() as conn:
            row = conn.execute(f"{_JOB_SELECT} WHERE j.run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no job {run_id!r} in {self.path}")
            return self._with_progress(conn, row)

    def is_job(self, run_id: str) -> bool:
        with self._read() as conn:
            return conn.execute("SELECT 1 FROM jobs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def jobs(self, *, recent: int = 20) -> list[JobRow]:
        """Queued and running jobs (queue order), then the `recent` latest that ended."""
        with self._read() as conn:
            active = conn.execute(
                f"{_JOB_SELECT} WHERE r.status IN ('queued', 'running') ORDER BY r.status = 'queued', j.seq"
            ).fetchall()
            ended = conn.execute(
                f"{_JOB_SELECT} WHERE r.status NOT IN ('queued', 'running') ORDER BY j.submitted_at DESC, j.seq DESC "
                "LIMIT ?",
                (recent,),
            ).fetchall()
            return [self._with_progress(conn, row) for row in [*active, *ended]]

    def _with_progress(self, conn: sqlite3.Connection, row: tuple) -> JobRow:
        job = JobRow(*row[:3], loads_json(row[3]), *row[4:10], bool(row[10]), row[11], row[12])
        todo = job.spec.get("todo", {}) or {}
        job.models = {str(m): ModelProgress(total=len(ids)) for m, ids in todo.items()}
        for model, n, n_err in conn.execute(
            "SELECT model, COUNT(*), SUM(error != '') FROM inferences WHERE run_id = ? GROUP BY model", (job.run_id,)
        ):
            progress = job.models.setdefault(model, ModelProgress())
            progress.done, progress.errors = int(n), int(n_err or 0)
        return job

    def _require_job(self, conn: sqlite3.Connection, run_id: str) -> str:
        row = conn.execute(
            "SELECT r.status FROM jobs j JOIN runs r USING (run_id) WHERE j.run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            self._require_run(conn, run_id)  # unknown run: that error; a run that is not a job: this one
            raise StoreError(f"run {run_id} is not a job (it was run by `detect` or imported)")
        return str(row[0])
