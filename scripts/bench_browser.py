"""Page speed in a real browser: each page of a stored run opened by link in headless Chromium, link to last chart.

    .venv/bin/python scripts/bench_browser.py [--images 500] [--boxes 20000] [--store DIR --keep] [--gt]
        [--pages home gallery ...] [--repeat 1] [--warm] [--json]
    .venv/bin/python scripts/bench_browser.py --floor [--warm] [--repeat 3]

The run is the one `scripts/bench_pages.py` builds (its `build`, in a child process, into a temporary store or into
`--store DIR`, reused when it holds one; the run's segment is written when it is finished). Per page (Home, Gallery,
Compare, Data, Evaluate) and per repeat: a fresh `streamlit run` server over the store (`bench_pages.serve`), headless
Chromium (/usr/bin/chromium, Playwright) in a new browser context 1400 px wide, `page.goto(URL?run=RUN_ID)`, then:

- `done_s`: from the goto to the moment the page is done, as the DOM says: connected, the script run ended
  (`data-test-script-state="notRunning"`, no "Running" status widget), the page's title drawn, no stale element, no
  skeleton or spinner, and every Plotly chart on the page (`[data-testid="stPlotlyChart"]`) rendered (its
  `.js-plotly-plot` holds a `.main-svg` and Plotly's layout); the moment is when that state began, kept only once it
  has held for `STABLE_S` (a rerun that starts again restarts it). Polled in the page every 50 ms (browser clock).
- `in_view_s`: the same, counting only the charts that intersect the first screen (the target lets charts below the
  fold draw when reached).
- Compare: the link opens its first tab (Speed); each other tab is then clicked and `tab_scores_s`,
  `tab_agreement_s` timed from the click to that tab's content and charts drawn (only the open tab's charts are computed and sent).
- `charts` (in the open tab), `payload_mb` (websocket frames received until done) and `server_rss_mb` (the server's peak RSS).
- Evaluate with `--gt` (bench_pages' `write_ground_truth`, `bench_gt.json` in the store): after the page is done, its
  ground truth is uploaded through the page's file uploader; `gt_s` is from the upload to the metrics, curves and every
  chart drawn, `eval_cached` whether the store already held the evaluation (the first upload on a store evaluates and
  keeps it: run twice to time the evaluation read back).

`--warm` times a returning visitor instead of a new one (see `visit`): the same fresh server, but a browser that
has opened the page before and kept Streamlit's and Plotly's bundles (static, immutable, per origin) and their
compiled code, as a team's own browsers do.

`--floor` times two tiny Streamlit apps instead (FLOOR_APPS: a title; a title and one three-point Plotly chart),
served by `streamlit run` with the app's config and timed the same way: what any page costs on this machine before
DetLens does anything.

The target (issue #22): every page <= 1.5 s from link to last chart drawn (`done_s`, or `in_view_s` where the later
charts are below the fold). Timings on a loaded machine mean little: measure on an idle one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import bench_pages as bp  # noqa: E402 (beside this script)

PAGES = ("home", "gallery", "compare", "data", "evaluate")
WIDTH, HEIGHT = 1400, 1000
STABLE_S = 1.0  # a done state that holds this long is the page's end state
TIMEOUT_S = 300.0
EVAL_TIMEOUT_S = bp.EVAL_TIMEOUT_S
TARGET_S = 1.5
# --warm: the visits before the timed one (Chromium keeps a script's compiled code from its second load on)
WARM_VISITS = 2
GT_SHOWN = "Precision-recall and AP per class"  # Evaluate's section drawn once the ground truth is evaluated
# Compare's other tabs (the link opens the first; Runtimes shows with runtime series only), each timed from its click
# to its content drawn
COMPARE_OTHER_TABS = ("Scores and classes", "Agreement")

# --floor: the least a Streamlit page costs on this machine in a fresh Chromium context, whatever the app does
FLOOR_APPS = {
    "title only": "import streamlit as st\n\nst.title('Floor')\n",
    "title and one Plotly chart": (
        "import plotly.graph_objects as go\nimport streamlit as st\n\nst.title('Floor')\n"
        "st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2])))\n"
    ),
}

# Installed before any page script: polls the DOM every 50 ms and keeps when the page last became done
# (window.__bench.doneAt, .inViewAt: performance.now() ms, null while not done) and the chart counts.
PROBE_JS = """(() => {
  const b = window.__bench = {doneAt: null, inViewAt: null, charts: 0, need: null, needPanel: false};
  const rendered = c => {
    const gd = c.querySelector('.js-plotly-plot');
    return gd !== null && gd.querySelector('.main-svg') !== null && gd._fullLayout !== undefined;
  };
  const probe = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (app === null || app.getAttribute('data-test-connection-state') !== 'CONNECTED'
        || app.getAttribute('data-test-script-state') !== 'notRunning'
        || document.querySelector('[data-testid="stMain"] h1') === null
        || document.querySelector('[data-testid^="stStatusWidgetRunning"], [data-testid="stStatusWidgetNewYearsIcon"]') !== null
        || document.querySelector('[data-testid="stElementContainer"][data-stale="true"]') !== null
        || document.querySelector('[data-testid="stSkeleton"], [data-testid="stSpinner"]') !== null
        || (b.need !== null && !document.querySelector('[data-testid="stMain"]').textContent.includes(b.need))) {
      return [false, false];
    }
    const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].filter(c => c.checkVisibility());
    b.charts = charts.length;  // in the open tab (a closed tab's charts are not drawn)
    const panel = [...document.querySelectorAll('[role="tabpanel"]')].find(p => p.checkVisibility());
    if (b.needPanel && (panel === undefined || panel.querySelector('[data-testid="stElementContainer"]') === null)) {
      return [false, false];  // the tab just opened: its content is not there yet
    }
    const shown = charts.filter(c => c.getBoundingClientRect().top < window.innerHeight);
    return [charts.every(rendered), shown.every(rendered)];
  };
  setInterval(() => {
    const [done, inView] = probe();
    const now = performance.now();
    b.doneAt = done ? (b.doneAt ?? now) : null;
    b.inViewAt = inView ? (b.inViewAt ?? now) : null;
  }, 50);
})()"""
SETTLED_JS = f"() => window.__bench && window.__bench.doneAt !== null && performance.now() - window.__bench.doneAt >= {STABLE_S * 1000}"  # noqa: E501
READ_JS = "() => ({...window.__bench, origin: performance.timeOrigin})"


def _since(t0_epoch_s: float, state: dict, key: str) -> float:
    """Seconds from `t0_epoch_s` (wall clock) to the in-page moment `state[key]` (performance.now() ms)."""
    return (state["origin"] + state[key]) / 1000 - t0_epoch_s


def _slug(label: str) -> str:
    return label.lower().split()[0]  # "Scores and classes" -> "scores"


def new_context(browser):  # noqa: ANN001, ANN201 (Playwright's)
    """A browser context as a new visitor has it (an empty cache), the probe installed in each of its pages."""
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    context.add_init_script(PROBE_JS)
    return context


def open_page(browser, base: str, page: str, gt_path: Path | None, *, query: str = f"?run={bp.RUN_ID}",
              context=None) -> dict:  # noqa: ANN001 (Playwright's browser and context)  # fmt: skip
    """The page by link in a new tab, timed to done; with `gt_path` on Evaluate, the upload timed too. In a fresh
    context, or in `context` (a returning visitor's, its cache kept)."""
    received = {"bytes": 0}

    def on_frame(payload: str | bytes) -> None:
        received["bytes"] += len(payload.encode() if isinstance(payload, str) else payload)

    own = context is None
    context = new_context(browser) if own else context
    tab = context.new_page()
    try:
        tab.on("websocket", lambda ws: ws.on("framereceived", on_frame))
        slug = "" if page == "home" else page
        t0 = time.time()
        tab.goto(f"{base}/{slug}{query}", wait_until="commit")
        tab.wait_for_function(SETTLED_JS, timeout=TIMEOUT_S * 1000, polling=100)
        state = tab.evaluate(READ_JS)
        out = {"done_s": _since(t0, state, "doneAt"), "in_view_s": _since(t0, state, "inViewAt"),
               "charts": state["charts"], "payload_mb": received["bytes"] / 1e6}  # fmt: skip
        if gt_path is not None and page == "evaluate":
            tab.evaluate(f"() => {{ window.__bench.need = {json.dumps(GT_SHOWN)}; window.__bench.doneAt = null; }}")
            tab.get_by_text("Upload a COCO instances JSON").click()
            uploader = tab.locator('[data-testid="stFileUploader"]').filter(has_text="COCO instances JSON")
            drop = uploader.locator('[data-testid="stFileUploaderDropzoneInput"]')
            drop.wait_for(state="attached", timeout=TIMEOUT_S * 1000)
            t1 = time.time()
            drop.set_input_files(str(gt_path))
            tab.wait_for_function(SETTLED_JS, timeout=EVAL_TIMEOUT_S * 1000, polling=100)
            state = tab.evaluate(READ_JS)
            out |= {"gt_s": _since(t1, state, "doneAt"), "gt_charts": state["charts"],
                    "payload_mb": received["bytes"] / 1e6}  # fmt: skip
        if page == "compare":
            for label in COMPARE_OTHER_TABS:
                tab.evaluate("() => { window.__bench.needPanel = true; window.__bench.doneAt = null; }")
                t1 = time.time()
                tab.get_by_role("tab", name=label).click()
                tab.wait_for_function(SETTLED_JS, timeout=TIMEOUT_S * 1000, polling=100)
                state = tab.evaluate(READ_JS)
                out[f"tab_{_slug(label)}_s"] = _since(t1, state, "doneAt")
        return out
    finally:
        tab.close()
        if own:
            context.close()


def visit(browser, store_dir: Path, page: str, gt_path: Path | None, *, warm: bool, script: Path | None = None,
          query: str = f"?run={bp.RUN_ID}") -> dict:  # noqa: ANN001 (a Playwright browser)  # fmt: skip
    """One timed visit of `page` by link, on a fresh server: a new visitor's (an empty browser context), or with
    `warm` a returning one's: the same page opened WARM_VISITS times before in the same context from servers at the
    same address (so the browser holds Streamlit's and Plotly's bundles, which Streamlit serves as immutable, and their
    compiled code), those servers stopped."""
    port = bp.free_port()
    context = new_context(browser) if warm else None
    try:
        for _ in range(WARM_VISITS if warm else 0):
            with bp.serve(store_dir, script=script, port=port) as (base, _):
                open_page(browser, base, page, None, query=query, context=context)
        with bp.serve(store_dir, script=script, port=port) as (base, proc):
            one = open_page(browser, base, page, gt_path, query=query, context=context)
            one["server_rss_mb"] = bp.peak_rss_mb(proc.pid)
        return one
    finally:
        if context is not None:
            context.close()


def measure(store_dir: Path, pages: list[str], gt_path: Path | None, repeat: int, *, warm: bool = False
            ) -> dict[str, dict]:  # fmt: skip
    """Per page, `repeat` times: a fresh server, a new visitor's context or with `warm` a returning one's (medians of
    the times over the repeats)."""
    from playwright.sync_api import sync_playwright

    from core.config import EVAL_CACHE_DIR

    results: dict[str, dict] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=bp.CHROMIUM, headless=True, args=bp.CHROMIUM_ARGS)
        try:
            for page in pages:
                runs = []
                for _ in range(repeat):
                    cache = store_dir / EVAL_CACHE_DIR
                    cached = cache.is_dir() and any(cache.iterdir())
                    one = visit(browser, store_dir, page, gt_path, warm=warm)
                    if "gt_s" in one:
                        one["eval_cached"] = cached
                    runs.append(one)
                results[page] = {k: _summary(k, [r[k] for r in runs]) for k in runs[0]}
        finally:
            browser.close()
    return results


def measure_floor(repeat: int, *, warm: bool = False) -> dict[str, dict]:
    """What any Streamlit page costs here, DetLens aside: FLOOR_APPS (a title; a title and one small Plotly chart),
    each served by `streamlit run` with the app's config, opened and timed as a page is (medians of `repeat`)."""
    from playwright.sync_api import sync_playwright

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="detlens-floor-") as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=bp.CHROMIUM, headless=True, args=bp.CHROMIUM_ARGS)
        try:
            for name, source in FLOOR_APPS.items():
                script = Path(tmp) / f"{_slug(name)}.py"
                script.write_text(source)
                runs = [visit(browser, Path(tmp) / "store", "home", None, warm=warm, script=script, query="")
                        for _ in range(repeat)]  # fmt: skip
                results[name] = {k: _summary(k, [r[k] for r in runs]) for k in runs[0]}
        finally:
            browser.close()
    return results


def _summary(key: str, values: list) -> float | int | bool:  # noqa: ANN401 (per key)
    if isinstance(values[0], bool):
        return values[0]
    if isinstance(values[0], int):
        return max(values)
    return round(statistics.median(values), 1 if key.endswith("_mb") and "rss" in key else 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--boxes", type=int, default=20_000)
    parser.add_argument("--store", type=Path, help="build into (or reuse) this folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store (printed)")
    parser.add_argument("--gt", action="store_true", help="Evaluate: time the upload of a ground truth too")
    parser.add_argument("--pages", nargs="+", choices=PAGES, help="only these")
    parser.add_argument("--repeat", type=int, default=1, help="fresh servers per page (medians)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--floor", action="store_true", help="time FLOOR_APPS instead (no run, no DetLens)")
    parser.add_argument("--warm", action="store_true", help="a returning visitor: the browser's cache kept (see visit)")
    args = parser.parse_args()
    if args.floor:
        floor = measure_floor(max(1, args.repeat), warm=args.warm)
        if args.json:
            print(json.dumps({"width": WIDTH, "repeat": args.repeat, "warm": args.warm, "floor": floor}))
            return 0
        visitor = "a returning visitor (cache kept)" if args.warm else "a new visitor (empty cache)"
        print(f"the floor: a Streamlit app without DetLens; Chromium {WIDTH} px, fresh server each time, {visitor}")
        for name, r in floor.items():
            print(f"  {name:28} done {r['done_s']:6.2f} s   payload {r['payload_mb']:5.2f} MB   charts {r['charts']}")
        return 0
    store_dir = args.store or Path(tempfile.mkdtemp(prefix="detlens-browser-"))
    try:
        if not (store_dir / "detlens.sqlite").is_file():
            cmd = [sys.executable, bp.__file__, "--build-only", "--store", str(store_dir)]
            subprocess.run([*cmd, "--images", str(args.images), "--boxes", str(args.boxes)], check=True)
        gt_path = bp.write_ground_truth(store_dir) if args.gt else None
        pages = [p for p in PAGES if not args.pages or p in args.pages]
        results = measure(store_dir, pages, gt_path, max(1, args.repeat), warm=args.warm)
        n_images, n_boxes = bp.run_size(store_dir)
    finally:
        if args.store is None and not args.keep:
            shutil.rmtree(store_dir, ignore_errors=True)
    slowest = max(max(r["done_s"], r.get("gt_s", 0.0)) for r in results.values())
    report = {"images": n_images, "boxes": n_boxes, "gt": bool(args.gt), "width": WIDTH, "repeat": args.repeat,
              "warm": args.warm,
              "target_s": TARGET_S, "meets_target": slowest <= TARGET_S, "pages": results}  # fmt: skip
    if args.json:
        print(json.dumps(report))
        return 0
    visitor = "a returning visitor (cache kept)" if args.warm else "a new visitor (empty cache)"
    print(f"run: {n_images} images x 2 models, {n_boxes} boxes; Chromium {WIDTH} px, fresh server per page, {visitor}")
    print(f"{'page':10} {'done s':>8} {'in view s':>10} {'charts':>7} {'gt s':>8} {'payload MB':>11} {'server MB':>10}")
    for page, r in results.items():
        gt = f"{r['gt_s']:8.2f}" if "gt_s" in r else f"{'':8}"
        print(f"{page:10} {r['done_s']:8.2f} {r['in_view_s']:10.2f} {r['charts']:7d} {gt} {r['payload_mb']:11.2f} "
              f"{r['server_rss_mb']:10.0f}")  # fmt: skip
    if "compare" in results:
        tabs = [f"{label} {results['compare'][f'tab_{_slug(label)}_s']:.2f} s" for label in COMPARE_OTHER_TABS]
        print(f"compare: another tab, click to its charts drawn: {', '.join(tabs)}")
    if "evaluate" in results and "eval_cached" in results["evaluate"]:
        print(f"evaluate: the evaluation was {'read back from' if results['evaluate']['eval_cached'] else 'computed into'}"
              " the store")  # fmt: skip
    verdict = "met" if report["meets_target"] else "NOT met"
    print(f"target: every page <= {TARGET_S} s from link to last chart drawn: {verdict} (slowest {slowest:.2f} s)")
    if args.keep and args.store is None:
        print(f"store kept: {store_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
