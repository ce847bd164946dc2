"""Page responsiveness on a stored run, opened as a user would (`?run=`): server time per page run.

    .venv/bin/python scripts/bench_pages.py [--images 500] [--boxes 20000] [--store DIR --keep] [--json]

Builds a run of N images (small generated PNGs, kept in the store) x 2 models with B boxes (most low-score, a few per
image above 0.5, 91 COCO classes) in a temporary store through the store's own API (`add_records`, `finish_run`), in
a child process so that the measured process holds only what the dashboard holds. Then, per page, in one process
(AppTest runs the page script as the server would): `cold_s` (first page after the caches are cleared: the run is
opened), `first_s` (a new session, run already open), `threshold_s` (median rerun after moving the threshold),
`next_s` (Gallery: median of Next), plus the process's peak RSS. With `--store DIR --keep` the built store is reused
by later calls (the 2-million-box build takes minutes). Not measured here: the bytes the browser receives (the e2e
test's Chromium is needed for that).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUN_ID = "20260101-000000-bench0"
BENCH_PAGES = ("pages/home.py", "pages/gallery.py", "pages/compare.py", "pages/data.py", "pages/evaluate.py")


def build(store_dir: Path, n_images: int, n_boxes: int, seed: int = 0) -> None:
    """The synthetic run, written through Store.add_records in batches of images, then finished (segment written)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from core.config import DETECTION_COLUMNS, HEADLINE_MODELS, INFERENCE_COLUMNS
    from core.images import ImageSource
    from core.models import get_model
    from core.records import RunInfo
    from core.store import Store

    rng = np.random.default_rng(seed)
    categories = get_model(HEADLINE_MODELS[0]).categories
    labels = np.array([i for i, c in enumerate(categories) if c not in ("N/A", "__background__")])
    store = Store(store_dir)
    store.start_run(RunInfo(RUN_ID, "2026-01-01T00:00:00+00:00", {"models": list(HEADLINE_MODELS)}))
    per_pair = n_boxes / (n_images * len(HEADLINE_MODELS))
    batch = 500
    for start in range(0, n_images, batch):
        inf_rows, det_parts = [], []
        for i in range(start, min(n_images, start + batch)):
            buf = io.BytesIO()
            Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
            ref = ImageSource.from_bytes(f"img_{i:05d}.png", buf.getvalue())
            store.put_image(ref, run_id=RUN_ID)
            for m, model in enumerate(HEADLINE_MODELS):
                total = float(rng.normal(900 if m == 0 else 35, 20 if m == 0 else 3))
                n = int(rng.poisson(per_pair))
                inf_rows.append({
                    "run_id": RUN_ID, "image_id": ref.image_id, "image_name": ref.name, "width": 64, "height": 48,
                    "model": model, "weights": "default", "device": "cpu", "precision": "fp32", "batch_size": 1,
                    "preprocess_ms": 2.0, "inference_ms": total - 3, "postprocess_ms": 1.0, "total_ms": total,
                    "n_detections": 0, "threshold": 0.5, "error": "", "created_at": "2026-01-01T00:00:00+00:00",
                })  # fmt: skip
                # most boxes low-score, a few per image above 0.5
                score = np.clip(0.01 + rng.beta(0.6, 6.0, n), 0.01, 1.0)
                lab = rng.choice(labels, n)
                x1, y1 = rng.uniform(0, 50, n), rng.uniform(0, 35, n)
                det_parts.append(pd.DataFrame({
                    "run_id": RUN_ID, "image_id": ref.image_id, "model": model, "label_id": lab,
                    "label": [categories[k] for k in lab], "score": score, "x1": x1, "y1": y1,
                    "x2": x1 + rng.uniform(2, 14, n), "y2": y1 + rng.uniform(2, 13, n),
                }))  # fmt: skip
        inf = pd.DataFrame(inf_rows, columns=list(INFERENCE_COLUMNS))
        store.add_records(RUN_ID, inf, pd.concat(det_parts)[list(DETECTION_COLUMNS)])
    t0 = time.perf_counter()
    store.finish_run(RUN_ID)
    print(f"built {n_images} images, segment written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def time_page(page: str, *, clear: bool, repeat: int) -> dict[str, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    if clear:
        st.cache_resource.clear()
        st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    at.query_params["run"] = RUN_ID
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    at.run()
    if page != "pages/home.py":
        t1 = time.perf_counter()
        at.switch_page(f"../{page}").run()
        out["page_s"] = time.perf_counter() - t1
    out["total_s"] = time.perf_counter() - t0
    if at.exception:
        raise SystemExit(f"{page} raised: {at.exception[0].value}")
    if clear:
        return out
    reruns = []
    for i in range(repeat):
        at.session_state["detlens_threshold"] = 0.3 + 0.1 * (i % 5)
        t0 = time.perf_counter()
        at.run()
        reruns.append(time.perf_counter() - t0)
    out["threshold_s"] = statistics.median(reruns)
    if page == "pages/gallery.py":
        steps = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            at.button(key="gallery_next").click().run()
            steps.append(time.perf_counter() - t0)
        out["next_s"] = statistics.median(steps)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--boxes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", type=Path, help="build into (or reuse) this folder")
    parser.add_argument("--keep", action="store_true", help="keep the store for the next call")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pages", nargs="+", choices=[p.split("/")[1][:-3] for p in BENCH_PAGES], help="only these")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    store_dir = args.store or Path(tempfile.mkdtemp(prefix="detlens-bench-"))
    if args.build_only:
        build(store_dir, args.images, args.boxes)
        return 0
    if not (store_dir / "detlens.sqlite").is_file():
        cmd = [sys.executable, __file__, "--build-only", "--store", str(store_dir)]
        subprocess.run([*cmd, "--images", str(args.images), "--boxes", str(args.boxes)], check=True)
    import os

    os.environ["DETLENS_STORE"] = str(store_dir)
    results: dict[str, dict[str, float]] = {}
    try:
        for page in [p for p in BENCH_PAGES if not args.pages or p.split("/")[1][:-3] in args.pages]:
            cold = time_page(page, clear=True, repeat=args.repeat)
            warm = time_page(page, clear=False, repeat=args.repeat)
            results[page.split("/")[1].removesuffix(".py")] = {
                "cold_s": round(cold["total_s"], 3),
                "first_s": round(warm.get("page_s", warm["total_s"]), 3),
                **{k: round(v, 3) for k, v in warm.items() if k not in ("page_s", "total_s")},
            }
    finally:
        if not args.keep and args.store is None:
            shutil.rmtree(store_dir, ignore_errors=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"images": args.images, "boxes": args.boxes, "pages": results, "peak_rss_mb": round(peak_mb, 1)}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"run: {args.images} images x 2 models, {args.boxes} boxes (store {store_dir})")
    print(f"{'page':10} {'cold s':>8} {'first s':>8} {'threshold s':>12} {'next s':>8}")
    for page, r in results.items():
        nxt = f"{r['next_s']:8.2f}" if "next_s" in r else f"{'':8}"
        print(f"{page:10} {r['cold_s']:8.2f} {r['first_s']:8.2f} {r.get('threshold_s', 0):12.2f} {nxt}")
    print(f"peak RSS: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
