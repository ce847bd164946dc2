"""Page responsiveness on a stored run, opened as a user would (`?run=`): server time per page run.

    .venv/bin/python scripts/bench_pages.py [--images 500] [--boxes 20000] [--store DIR --keep] [--gt] [--payload]
        [--json]

Builds a run of N images (small generated PNGs, kept in the store) x 2 models with B boxes (most low-score, a few per
image above 0.5, 91 COCO classes) in a temporary store through the store's own API (`add_records`, `finish_run`), in
a child process so that the measured process holds only what the dashboard holds. Then, per page, in one process
(AppTest runs the page script as the server would): `cold_s` (first page after the caches are cleared: the run is
opened), `first_s` (a new session, run already open), `threshold_s` (median rerun after moving the threshold),
for the Gallery `page_change_s` (the grid's next page), `open_s` (an image opened from the grid) and `next_s`
(median of Next in the opened image), and for Compare `select_s` (a point selected in its speed chart: the rerun that
opens that image in the Gallery), plus the process's peak RSS. With `--store DIR --keep` the built store is reused
by later calls (the 2-million-box build takes minutes).

`--gt` writes a COCO ground truth for every image of the run (`bench_gt.json` in the store: the first model's boxes
above 0.3, moved a pixel, a few per image) and times the Evaluate page with it as the session's ground truth (cold: the
COCO evaluation of both models, the evaluations kept in the store removed first; then cached), `new_gt_s` (another
ground truth, the same less one box, given with the run already open: a fresh evaluation) and `restart_s` (the caches
cleared again, as by a server restart: the evaluations read back from the store). `--payload` starts `streamlit run dashboard/app.py` on a free local port
with the store, opens each page with `?run=` in headless Chromium (Playwright, /usr/bin/chromium, a new browser
context per page) and sums the bytes of the websocket frames the page receives until it is idle (`payload_mb`; with
`--gt` the Evaluate page's ground truth is uploaded through its file uploader, and the frames up to its metrics are
counted too), then reads the server's peak RSS (`serverpeak_rss_mb`, VmHWM: the server process alone, not the
evaluation workers it starts). The AppTest timings come first, in this process.

`--imported` times the imported case, each step in its own process, with wall time and peak RSS (the largest
process of the step's tree): the run exported to a zip (`bench_run.zip` in the store, made once), `python -m core
import` of it into a new store, the first open of the imported run in a fresh process (Home, cold: what a new server
does at `?run=`), and `python -m core evaluate --run RUN --gt GT --json` on it (with `--gt`'s ground truth).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUN_ID = "20260101-000000-bench0"
BENCH_PAGES = ("pages/home.py", "pages/gallery.py", "pages/compare.py", "pages/data.py", "pages/evaluate.py")
GT_FILE = "bench_gt.json"
EVAL_CACHE_DIR = "cache/evaluations"  # core.config.EVAL_CACHE_DIR (imported late: this module starts light)
GT_MIN_SCORE = 0.3  # the first model's boxes at or above this score become ground truth (a few per image)
GT_MAX_PER_IMAGE = 6
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]  # fmt: skip
IDLE_S = 2.0  # a page is done when the script has stopped and no frame came for this long
PAGE_TIMEOUT_S = 180.0
EVAL_TIMEOUT_S = 900.0  # a cold evaluation of 2 million boxes, on a loaded machine


def build(store_dir: Path, n_images: int, n_boxes: int, seed: int = 0) -> None:
    """The synthetic run, written through Store.add_records in batches of images, then finished (segment written)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from core.config import DETECTION_COLUMNS, HEADLINE_MODELS, INFERENCE_COLUMNS
    from core.images import ImageSource
    from core.inference.models import get_model
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


def write_ground_truth(store_dir: Path, seed: int = 0) -> Path:
    """A COCO instances file for every image of the stored run (kept in the store; written once): per image, up to
    GT_MAX_PER_IMAGE of the first model's boxes with score >= GT_MIN_SCORE, moved by up to a pixel, else one box."""
    path = store_dir / GT_FILE
    if path.is_file():
        return path
    import numpy as np

    from core.analytics import load_run_frame
    from core.store import Store

    rng = np.random.default_rng(seed)
    rf = load_run_frame(Store(store_dir), RUN_ID)
    names = dict(zip(rf.inferences["image_id"].astype(str), rf.inferences["image_name"].astype(str), strict=True))
    sizes = rf.inferences.drop_duplicates("image_id").set_index("image_id")[["width", "height"]]
    first = rf.models.index(rf.models[0])
    categories = {int(i): str(n) for i, n in zip(rf.label_ids, rf.labels, strict=True)}
    images, annotations = [], []
    for k, image_id in enumerate(rf.image_ids):
        width, height = (int(v) for v in sizes.loc[image_id])
        images.append({"id": k + 1, "file_name": names[image_id], "width": width, "height": height})
        part = rf.image_slice(image_id)
        keep = np.flatnonzero((rf.model[part] == first) & (rf.score[part] >= GT_MIN_SCORE))[:GT_MAX_PER_IMAGE]
        picked = [(int(rf.label_ids[rf.label[part][j]]), rf.boxes[part][j]) for j in keep]
        if not picked:
            picked = [(next(iter(categories)), np.array([5.0, 5.0, 25.0, 20.0]))]
        for label_id, (x1, y1, x2, y2) in picked:
            x, y = max(0.0, x1 + rng.uniform(-1, 1)), max(0.0, y1 + rng.uniform(-1, 1))
            w, h = min(x2 - x1, width - x), min(y2 - y1, height - y)
            annotations.append({"id": len(annotations) + 1, "image_id": k + 1, "category_id": label_id,
                                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                                "area": round(w * h, 2), "iscrowd": 0})  # fmt: skip
    used = sorted({a["category_id"] for a in annotations})
    doc = {"info": {"description": "bench_pages ground truth"}, "images": images, "annotations": annotations,
           "categories": [{"id": i, "name": categories[i], "supercategory": ""} for i in used]}  # fmt: skip
    path.write_text(json.dumps(doc))
    print(f"ground truth: {len(images)} images, {len(annotations)} boxes -> {path}", file=sys.stderr)
    return path


def gt_session(gt_path: Path | None) -> dict | None:
    """What dashboard.groundtruth keeps in session state for an uploaded ground truth."""
    if gt_path is None:
        return None
    from core.images import content_id
    from dashboard import groundtruth

    data = gt_path.read_bytes()
    return {"digest": content_id(data), "name": gt_path.name, "source": groundtruth.UPLOAD, "data": data}


def threshold_reruns(at, repeat: int) -> list[float]:  # noqa: ANN001 (an AppTest)
    """Seconds of each of `repeat` reruns after moving the threshold (0.3, 0.4, ... 0.7, again)."""
    times = []
    for i in range(repeat):
        at.session_state["detlens_threshold"] = 0.3 + 0.1 * (i % 5)
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
    return times


def time_page(page: str, *, clear: bool, repeat: int, gt: dict | None = None) -> dict[str, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard import groundtruth

    if clear:
        st.cache_resource.clear()
        st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    at.query_params["run"] = RUN_ID
    if gt is not None and page == "pages/evaluate.py":
        at.session_state[groundtruth.GT_KEY] = gt
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
    out["threshold_s"] = statistics.median(threshold_reruns(at, repeat))
    if page == "pages/gallery.py":
        out.update(_time_gallery_steps(at, repeat))
    if page == "pages/compare.py":
        out["select_s"] = _time_compare_select(at)
    if page == "pages/evaluate.py" and gt is not None:
        out["new_gt_s"] = _time_new_ground_truth(at, gt)
    return out


def _time_new_ground_truth(at, gt: dict) -> float:  # noqa: ANN001 (an AppTest on Evaluate, the run open)
    """Another ground truth (the same less its last box) given to Evaluate with the run already open: the rerun that
    evaluates every model against it (nothing of it kept yet, in memory or in the store)."""
    from core.images import content_id
    from dashboard import groundtruth

    doc = json.loads(gt["data"])
    doc["annotations"] = doc["annotations"][:-1]
    data = json.dumps(doc).encode()
    at.session_state[groundtruth.GT_KEY] = gt | {"digest": content_id(data), "data": data}
    t0 = time.perf_counter()
    at.run()
    took = time.perf_counter() - t0
    if at.exception:
        raise SystemExit(f"Evaluate raised: {at.exception[0].value}")
    return took


def _time_compare_select(at) -> float:  # noqa: ANN001 (an AppTest on Compare)
    """A point selected in Compare's speed-versus-detections chart: the rerun that switches to the Gallery, opened on
    that point's image (the selection set as the chart's widget state, as the browser sends it)."""
    from dashboard.cache import store

    image_id = max(store().run_images(RUN_ID))  # any image of the run
    at.session_state["cmp_speed"] = {"selection": {"points": [{"customdata": [image_id]}], "point_indices": [0],
                                                   "box": [], "lasso": []}}  # fmt: skip
    t0 = time.perf_counter()
    at.run()
    took = time.perf_counter() - t0
    if not at.title or at.title[0].value != "Gallery" or at.exception:
        raise SystemExit("selecting a point in Compare did not open the Gallery")
    return took


def _time_gallery_steps(at, repeat: int) -> dict[str, float]:  # noqa: ANN001 (an AppTest on the Gallery's grid)
    """The grid's page change, opening an image from it, then next image (medians over `repeat`)."""

    def timed(step) -> float:  # noqa: ANN001
        t0 = time.perf_counter()
        step().run()
        return time.perf_counter() - t0

    pages = [timed(lambda i=i: at.number_input(key="gallery_page").set_value(2 + i % 2)) for i in range(repeat)]
    opened = timed(lambda: at.button(key="gallery_open_0").click())
    nexts = [timed(lambda: at.button(key="gallery_next").click()) for _ in range(repeat)]
    return {"page_change_s": statistics.median(pages), "open_s": opened, "next_s": statistics.median(nexts)}


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process (and of its children still running is not counted), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def serve(store_dir: Path, script: Path | None = None, port: int = 0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python -m dashboard.serve` (what `scripts/dev.sh run` starts: streamlit run, the app preloaded) over `store_dir` on a free local port (no worker autostart, in its own process
    group); yields (its base URL once healthy, the process); stops it and everything it started. `script`: another
    app, by `streamlit run`; `port`: this one (a returning browser's cache is per origin), else a free one."""
    import os
    import signal
    import urllib.request

    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    app = ["streamlit", "run", str(script)] if script is not None else ["dashboard.serve"]  # another app: the floor
    cmd = [sys.executable, "-m", *app, "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]  # fmt: skip
    env = {**os.environ, "DETLENS_STORE": str(store_dir), "DETLENS_WORKER_AUTOSTART": "0", "PYTHONUNBUFFERED": "1"}
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with opener.open(f"{base}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"streamlit did not start:\n{log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.25)
        yield base, proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def measure_payload(
    store_dir: Path, pages: list[str], gt_path: Path | None = None
) -> tuple[dict[str, tuple[float, float]], float]:
    """({page: (MB received over the websocket, server peak RSS in MB after it)}, the server's peak RSS in MB): one
    `streamlit run` server, one fresh headless Chromium context per page opened with `?run=`, in the order given (the
    first opens the run)."""
    from playwright.sync_api import sync_playwright

    out: dict[str, tuple[float, float]] = {}
    with serve(store_dir) as (base, proc):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                for page_path in pages:
                    size = _page_bytes(browser, base, page_path, gt_path)
                    out[page_path.split("/")[1].removesuffix(".py")] = (size / 1e6, peak_rss_mb(proc.pid))
            finally:
                browser.close()
        peak = peak_rss_mb(proc.pid)
    return out, peak


def _page_bytes(browser, base: str, page_path: str, gt_path: Path | None = None) -> int:
    """Bytes of every websocket frame a fresh session of `page_path` (with `?run=`) receives until it is idle (the
    Evaluate page: after `gt_path` is uploaded and its metrics are shown)."""
    slug = "" if page_path == "pages/home.py" else page_path.split("/")[1].removesuffix(".py")
    received = {"bytes": 0, "last": time.monotonic()}

    def on_frame(payload: str | bytes) -> None:
        received["bytes"] += len(payload.encode() if isinstance(payload, str) else payload)
        received["last"] = time.monotonic()

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
        page.goto(f"{base}/{slug}?run={RUN_ID}", wait_until="domcontentloaded")
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'
        page.wait_for_selector(idle, timeout=PAGE_TIMEOUT_S * 1000)
        while time.monotonic() - received["last"] < IDLE_S and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        if gt_path is not None and page_path == "pages/evaluate.py":
            page.get_by_text("Upload a COCO instances JSON").click()
            uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="COCO instances JSON")
            uploader.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(gt_path))
            page.get_by_text("Precision-recall and AP per class").wait_for(
                timeout=EVAL_TIMEOUT_S * 1000
            )  # metrics shown
            page.wait_for_selector(idle, timeout=EVAL_TIMEOUT_S * 1000)
            received["last"] = time.monotonic()
            while time.monotonic() - received["last"] < IDLE_S:
                page.wait_for_timeout(250)
        return received["bytes"]
    finally:
        context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--boxes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", type=Path, help="build into (or reuse) this folder")
    parser.add_argument("--keep", action="store_true", help="keep the store for the next call")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pages", nargs="+", choices=[p.split("/")[1][:-3] for p in BENCH_PAGES], help="only these")
    parser.add_argument("--gt", action="store_true", help="time Evaluate with ground truth for every image")
    parser.add_argument("--payload", action="store_true", help="bytes each page sends to headless Chromium")
    parser.add_argument("--imported", action="store_true", help="time import, first open and evaluate --run of a zip")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first-open", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    store_dir = args.store or Path(tempfile.mkdtemp(prefix="detlens-bench-"))
    if args.build_only:
        build(store_dir, args.images, args.boxes)
        return 0
    if args.first_open:  # a fresh process: the first page of the stored run, nothing cached
        import os

        os.environ["DETLENS_STORE"] = str(store_dir)
        print(json.dumps({"first_open_s": time_page("pages/home.py", clear=True, repeat=1)["total_s"]}))
        return 0
    if not (store_dir / "detlens.sqlite").is_file():
        cmd = [sys.executable, __file__, "--build-only", "--store", str(store_dir)]
        subprocess.run([*cmd, "--images", str(args.images), "--boxes", str(args.boxes)], check=True)
    if args.imported:
        return imported_case(store_dir, gt=args.gt, as_json=args.json)
    import os

    os.environ["DETLENS_STORE"] = str(store_dir)
    from core.config import EVAL_CACHE_DIR

    pages = [p for p in BENCH_PAGES if not args.pages or p.split("/")[1][:-3] in args.pages]
    results: dict[str, dict[str, float]] = {}
    server_peak = None
    try:
        gt = gt_session(write_ground_truth(store_dir) if args.gt else None)
        for page in pages:
            shutil.rmtree(store_dir / EVAL_CACHE_DIR, ignore_errors=True)  # cold: evaluated, not read back
            cold = time_page(page, clear=True, repeat=args.repeat, gt=gt)
            warm = time_page(page, clear=False, repeat=args.repeat, gt=gt)
            results[page.split("/")[1].removesuffix(".py")] = {
                "cold_s": round(cold["total_s"], 3),
                "first_s": round(warm.get("page_s", warm["total_s"]), 3),
                **{k: round(v, 3) for k, v in warm.items() if k not in ("page_s", "total_s")},
            }
            if page == "pages/evaluate.py" and gt is not None:  # a server restart: the evaluation kept in the store
                kept = time_page(page, clear=True, repeat=args.repeat, gt=gt)
                results["evaluate"]["restart_s"] = round(kept["total_s"], 3)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.payload:
            payload, server_peak = measure_payload(store_dir, pages, store_dir / GT_FILE if args.gt else None)
            for page, (mb, rss) in payload.items():
                results[page]["payload_mb"] = round(mb, 3)
                results[page]["serverpeak_rss_mb"] = round(rss, 1)
    finally:
        if not args.keep and args.store is None:
            shutil.rmtree(store_dir, ignore_errors=True)
    n_images, n_boxes = run_size(store_dir) if store_dir.exists() else (args.images, args.boxes)
    report = {"images": n_images, "boxes": n_boxes, "gt": bool(args.gt), "pages": results,
              "peak_rss_mb": round(peak_mb, 1)}  # fmt: skip
    if server_peak is not None:
        report["serverpeak_rss_mb"] = round(server_peak, 1)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"run: {n_images} images x 2 models, {n_boxes} boxes (store {store_dir})")
    steps = ("page_change_s", "open_s", "next_s", "select_s")
    print(f"{'page':10} {'cold s':>8} {'first s':>8} {'threshold s':>12} {'page s':>8} {'open s':>8} {'next s':>8} "
          f"{'select s':>8} {'payload MB':>11}")  # fmt: skip
    for page, r in results.items():
        gallery = "".join(f" {r[k]:8.2f}" if k in r else f" {'':8}" for k in steps)
        mb = f"{r['payload_mb']:11.2f}" if "payload_mb" in r else ""
        print(f"{page:10} {r['cold_s']:8.2f} {r['first_s']:8.2f} {r.get('threshold_s', 0):12.2f}{gallery} {mb}")
    print(f"peak RSS: {peak_mb:.0f} MB (AppTest process)")
    if server_peak is not None:
        print(f"server peak RSS: {server_peak:.0f} MB (streamlit run, after the payload pages)")
    return 0


# A step's wall time and the peak RSS of its process tree (RUSAGE_CHILDREN: the largest waited-for descendant).
_TIMED = (
    "import json, resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "out = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - t0\n"
    "if out.returncode:\n"
    "    sys.exit(out.stderr[-2000:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(json.dumps({'wall_s': wall, 'peak_mb': peak, 'stdout': out.stdout[-4000:]}))\n"
)


def timed(cmd: list[str]) -> dict:
    """Run `cmd` from a small wrapper process: its wall seconds, peak RSS in MB and the end of its output."""
    out = subprocess.run([sys.executable, "-c", _TIMED, *cmd], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout)


def imported_case(store_dir: Path, *, gt: bool, as_json: bool) -> int:
    """Export the bench run once, then time import, the imported run's first open and `evaluate --run` on it."""
    zip_path = store_dir / "bench_run.zip"
    if not zip_path.is_file():
        subprocess.run([sys.executable, "-m", "core", "export", RUN_ID, str(zip_path), "--store", str(store_dir)],
                       check=True, cwd=ROOT)  # fmt: skip
    gt_path = write_ground_truth(store_dir) if gt else None
    with tempfile.TemporaryDirectory(prefix="detlens-imported-") as tmp:
        target = Path(tmp) / "store"
        report = {"zip_mb": round(zip_path.stat().st_size / 1e6, 1)}
        step = timed([sys.executable, "-m", "core", "import", str(zip_path), "--store", str(target)])
        report["import_s"], report["import_peak_mb"] = round(step["wall_s"], 2), round(step["peak_mb"])
        step = timed([sys.executable, __file__, "--first-open", "--store", str(target)])
        report["first_open_s"] = round(json.loads(step["stdout"].strip().splitlines()[-1])["first_open_s"], 2)
        report["first_open_process_s"] = round(step["wall_s"], 2)
        if gt_path is not None:
            step = timed([sys.executable, "-m", "core", "evaluate", "--run", RUN_ID, "--store", str(target), "--gt",
                          str(gt_path), "--json"])  # fmt: skip
            report["evaluate_s"], report["evaluate_peak_mb"] = round(step["wall_s"], 2), round(step["peak_mb"])
    n_images, n_boxes = run_size(store_dir)
    report = {"images": n_images, "boxes": n_boxes, **report}
    if as_json:
        print(json.dumps(report))
        return 0
    print(f"imported run: {n_images} images x 2 models, {n_boxes} boxes, zip {report['zip_mb']} MB")
    print(f"  import           : {report['import_s']:7.2f} s   peak {report['import_peak_mb']} MB")
    print(f"  first open (Home): {report['first_open_s']:7.2f} s   (its process, imports included: "
          f"{report['first_open_process_s']:.2f} s)")  # fmt: skip
    if "evaluate_s" in report:
        print(f"  evaluate --run   : {report['evaluate_s']:7.2f} s   peak {report['evaluate_peak_mb']} MB")
    return 0


def run_size(store_dir: Path) -> tuple[int, int]:
    """(images, detection rows) of the benchmark run as stored."""
    import sqlite3

    with sqlite3.connect(f"file:{store_dir / 'detlens.sqlite'}?mode=ro", uri=True) as db:
        n_images = db.execute("SELECT COUNT(DISTINCT image_id) FROM inferences WHERE run_id = ?", (RUN_ID,)).fetchone()
        n_boxes = db.execute("SELECT COUNT(*) FROM detections WHERE run_id = ?", (RUN_ID,)).fetchone()
    return int(n_images[0]), int(n_boxes[0])


if __name__ == "__main__":
    raise SystemExit(main())
