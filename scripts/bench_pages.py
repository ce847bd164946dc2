"""Page responsiveness: AppTest run time of each page with a large synthetic session.

    .venv/bin/python scripts/bench_pages.py [--images 500] [--boxes 20000] [--repeat 3]

Seeds a session of N images (small generated PNGs, so thumbnails and overlays are real) x 2 models with B boxes in
all, then times a first run and a rerun (e.g. after moving the threshold slider) of every page. Target: under 2 s.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from core.config import DETECTION_COLUMNS, HEADLINE_MODELS, INFERENCE_COLUMNS  # noqa: E402
from core.images import ImageSource  # noqa: E402
from core.models import get_model  # noqa: E402
from core.records import coerce_detections, coerce_inferences  # noqa: E402
from dashboard.pagelist import PAGES  # noqa: E402


def synthetic_session(n_images: int, n_boxes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    categories = get_model(HEADLINE_MODELS[0]).categories
    labels = [i for i, c in enumerate(categories) if c not in ("N/A", "__background__")]
    refs, inf_rows = {}, []
    for i in range(n_images):
        buf = io.BytesIO()
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
        ref = ImageSource.from_bytes(f"img_{i:04d}.png", buf.getvalue())
        refs[ref.image_id] = ref
        for m, model in enumerate(HEADLINE_MODELS):
            total = float(rng.normal(900 if m == 0 else 35, 20 if m == 0 else 3))
            inf_rows.append({
                "run_id": "bench", "image_id": ref.image_id, "image_name": ref.name, "width": 64, "height": 48,
                "model": model, "weights": "default", "device": "cpu", "precision": "fp32", "batch_size": 1,
                "preprocess_ms": 2.0, "inference_ms": total - 3, "postprocess_ms": 1.0, "total_ms": total,
                "n_detections": 0, "threshold": 0.5, "error": "", "created_at": "2026-01-01T00:00:00+00:00",
            })  # fmt: skip
    ids = np.array(list(refs))
    img = rng.integers(0, n_images, n_boxes)
    x1, y1 = rng.uniform(0, 50, n_boxes), rng.uniform(0, 35, n_boxes)
    lab = rng.choice(labels, n_boxes)
    det = pd.DataFrame({
        "run_id": "bench", "image_id": ids[img], "model": rng.choice(HEADLINE_MODELS, n_boxes),
        "label_id": lab, "label": [categories[i] for i in lab], "score": rng.uniform(0.01, 1.0, n_boxes),
        "x1": x1, "y1": y1, "x2": x1 + rng.uniform(2, 14, n_boxes), "y2": y1 + rng.uniform(2, 13, n_boxes),
    })  # fmt: skip
    inf = pd.DataFrame(inf_rows, columns=list(INFERENCE_COLUMNS))
    return coerce_inferences(inf), coerce_detections(det[list(DETECTION_COLUMNS)]), refs


def time_page(page: str, session, repeat: int) -> tuple[float, float]:
    """(first run seconds, median rerun seconds after a threshold change)."""
    inf, det, refs = session
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    at.session_state["detlens_inferences"] = inf
    at.session_state["detlens_detections"] = det
    at.session_state["detlens_images"] = refs
    at.session_state["detlens_runs"] = []
    t0 = time.perf_counter()
    at.run()  # the frame and the default page (Home)
    if page != "pages/home.py":
        t0 = time.perf_counter()
        at.switch_page(f"../{page}").run()
    first = time.perf_counter() - t0
    if at.exception:
        raise SystemExit(f"{page} raised: {at.exception[0].value}")
    reruns = []
    for i in range(repeat):
        at.session_state["detlens_threshold"] = 0.3 + 0.1 * (i % 5)
        t0 = time.perf_counter()
        at.run()
        reruns.append(time.perf_counter() - t0)
    return first, statistics.median(reruns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--boxes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    session = synthetic_session(args.images, args.boxes)
    print(f"session: {args.images} images x {len(HEADLINE_MODELS)} models, {args.boxes} boxes")
    print(f"{'page':22} {'first run s':>12} {'rerun s':>10}")
    worst = 0.0
    for p in PAGES:
        first, rerun = time_page(p.path, session, args.repeat)
        worst = max(worst, first, rerun)
        print(f"{p.path:22} {first:12.2f} {rerun:10.2f}")
    print(f"slowest: {worst:.2f} s ({'under' if worst < 2 else 'OVER'} the 2 s target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
