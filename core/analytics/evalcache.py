"""Finished evaluations kept on disk, so that a server restart or a teammate opening the same run with the same ground
truth does not pay the COCO evaluation again (13 s at 10,000 images x 2 million boxes; reading it back: a fraction of a
second).

An entry is one core.evalcore ArrayEval, keyed by the content of its ArrayJob: every array (the variant's boxes, its
matched ground-truth boxes), the COCOeval ground-truth dict, the settings (max dets, IoU, score floor) and the evaluator
with its version. Anything that changes a figure changes the key; nothing else (not the run id, not the file name).
Stored as `.npz` read with `allow_pickle=False` (a shared store folder never runs code from a file), written atomically,
the least recently used removed past EVAL_CACHE_MAX_ENTRIES. Every failure to read or write is a miss: the cache never
stops an evaluation.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from core.config import EVAL_CACHE_MAX_ENTRIES
from core.evalcore import ArrayEval, ArrayJob, CocoSummary
from core.files import write_atomic

FORMAT = "detlens-eval-1"  # change when ArrayEval or the figures' meaning changes: old entries are then never read
_SUMMARY_ARRAYS = ("stats", "iou_thresholds", "recall_thresholds", "precision", "scores")
_RESULT_ARRAYS = ("outcome", "score", "matched_score")


def job_key(job: ArrayJob, evaluator: str) -> str:
    """The content key of an evaluation: a BLAKE2b digest of everything its figures depend on (`evaluator`: the
    evaluating package with its version, e.g. 'faster-coco-eval 1.8.0')."""
    h = hashlib.blake2b(digest_size=20)
    settings = {
        "format": FORMAT,
        "evaluator": evaluator,
        "backend": job.backend,
        "img_ids": [int(i) for i in job.img_ids],
        "max_dets": list(job.max_dets),
        "iou": float(job.iou),
        "score_floor": float(job.score_floor),
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(json.dumps(job.coco, sort_keys=True, separators=(",", ":"), default=str).encode())
    for name in ("gt_image", "position", "label_id", "score", "boxes", "g_position", "g_label", "g_xywh", "g_crowd"):
        a = np.ascontiguousarray(getattr(job, name))
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def _entry(folder: Path, key: str) -> Path:
    return folder / f"{key}.npz"


def load_entry(folder: Path, key: str) -> ArrayEval | None:
    """The kept evaluation of `key`, or None (none kept, or unreadable)."""
    path = _entry(folder, key)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                return None
            summary = None
            if meta["has_summary"]:
                summary = CocoSummary(
                    cat_ids=tuple(meta["cat_ids"]),
                    img_ids=tuple(meta["img_ids"]),
                    **{name: z[name] for name in _SUMMARY_ARRAYS},
                )
            result = ArrayEval(summary, meta["error"], int(meta["n_results"]), *(z[name] for name in _RESULT_ARRAYS))
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # used now: the last to be removed
    return result


def save_entry(folder: Path, key: str, result: ArrayEval, *, max_entries: int = EVAL_CACHE_MAX_ENTRIES) -> None:
    """Keep `result` under `key` (best effort: a read-only or full store just keeps nothing), then remove the least
    recently used entries past `max_entries`."""
    s = result.summary
    meta = {
        "format": FORMAT,
        "error": result.error,
        "n_results": int(result.n_results),
        "has_summary": s is not None,
        "cat_ids": [int(c) for c in s.cat_ids] if s is not None else [],
        "img_ids": [int(i) for i in s.img_ids] if s is not None else [],
    }
    arrays = {name: np.asarray(getattr(result, name)) for name in _RESULT_ARRAYS}
    if s is not None:
        arrays |= {name: np.asarray(getattr(s, name)) for name in _SUMMARY_ARRAYS}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(_entry(folder, key), buf.getvalue())
        prune(folder, max_entries)
    except OSError:
        return


def prune(folder: Path, max_entries: int = EVAL_CACHE_MAX_ENTRIES) -> None:
    """Remove the least recently used entries past `max_entries`."""
    entries = []
    for path in folder.glob("*.npz"):
        with contextlib.suppress(OSError):
            entries.append((path.stat().st_mtime, path))
    for _, path in sorted(entries, reverse=True)[max_entries:]:
        with contextlib.suppress(OSError):
            path.unlink()
