"""The look of every page in Chromium, shared by the browser test (tests/e2e/test_look.py) and the README's screenshots
(scripts/screenshots.py): a store with one finished run, a server over it, each page opened by link and checked.

Checks on a settled page (every chart drawn): no console error (except Streamlit's own probe of `<page>/_stcore/...`
on a deep link, streamlit/streamlit#7074: two 404s from the local server, nothing from outside), no text clipped in a
button, widget label, caption, metric label or value, or a multiselect's chips (an element whose scrollWidth exceeds
its clientWidth: a chip cut short, or a chip scrolled out of the box), and the columns a user came for among the
columns a table shows without scrolling.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e import serving

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = ("fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large")
PHOTOS = ("astronaut.jpg", "cat.jpg", "coffee.jpg", "motorcycle.jpg")
THRESHOLD = "0.05"  # untrained weights score low: show their boxes
SIZES = ((1280, 800), (1920, 1080))
SETTLE_TIMEOUT_MS = 180_000

# page url path -> the columns a user came for, each tuple shown together by one of the page's tables
PAGES: dict[str, list[tuple[str, ...]]] = {
    "": [("Model", "Box mAP (COCO)", "GFLOPS")],
    "run": [],
    "gallery": [],
    "compare": [("Model", "Median total", "p95 total", "Box mAP")],
    "evaluate": [],
    "data": [("Image", "Model", "Total ms", "Model call ms", "Boxes"), ("Class", "Score")],
    "runs": [("Run", "Status", "Images", "Models")],
    "review": [],
    "reviews": [],
}
# Streamlit probes `<page>/_stcore/health` and `.../host-config` first on a deep link (streamlit/streamlit#7074)
STREAMLIT_DEEP_LINK_PROBE = re.compile(r"/[A-Za-z0-9_-]+/_stcore/(health|host-config)$")

SETTLED_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (app === null || app.getAttribute('data-test-connection-state') !== 'CONNECTED'
        || app.getAttribute('data-test-script-state') !== 'notRunning'
        || document.querySelector('[data-testid="stElementContainer"][data-stale="true"]') !== null
        || document.querySelector('[data-testid="stSkeleton"]') !== null) return false;  // a lazy element loading
    const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
    return charts.every(c => c.querySelector('.main-svg') !== null);
}"""
MAIN_HEIGHT_JS = """() => {
    const main = document.querySelector('[data-testid="stMain"]');
    return Math.ceil(main ? main.scrollHeight : document.body.scrollHeight);
}"""
CLIPPED_JS = """() => {
    const selectors = ['button p', '[data-testid="stWidgetLabel"] p', '[data-testid="stCaptionContainer"]',
                       '[data-testid="stImageCaption"]', '[data-testid="stMetricLabel"] p', '[data-testid="stCheckbox"] p',
                       '[data-testid="stMetricValue"] div', '[data-testid="stSidebarNavLink"] span',
                       '[data-testid="stMetricLabel"]', '[data-testid="stMetricLabel"] div',
                       // a multiselect's chips: one cut short ("ssdlite32..."), or scrolled out of its box
                       '[data-baseweb="tag"] span', '[data-tag] > span[title]',
                       '[data-testid="stMultiSelectTagsContainer"]'];
    const out = [];
    for (const sel of selectors) {
        for (const el of document.querySelectorAll(sel)) {
            const box = el.getBoundingClientRect();
            if (box.width === 0 || box.height === 0) continue;  // not shown (a closed expander)
            if (el.scrollWidth > el.clientWidth + 1) out.push(sel + ': ' + el.innerText.slice(0, 80));
        }
    }
    return out;
}"""
SHOWN_TABLES = """[...document.querySelectorAll('[data-testid="stDataFrame"]')].filter(d => d.checkVisibility())"""  # not in a closed expander
TABLES_DRAWN_JS = f"""() => {SHOWN_TABLES}.every(d => d.querySelector('th[role="columnheader"]') !== null)"""
HEADERS_JS = f"""() => {SHOWN_TABLES}.map(
    d => [...d.querySelectorAll('th[role="columnheader"]')].map(h => h.textContent.trim()))"""


@dataclass
class PageLook:
    """What one page showed: problems found, and where its screenshot is."""

    page: str
    size: tuple[int, int]
    console_errors: list[str] = field(default_factory=list)
    clipped: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def problems(self) -> list[str]:
        return [*self.console_errors, *(f"clipped {c}" for c in self.clipped), *self.missing_columns]


def make_store(store: Path) -> str:
    """A store with one finished run of the headline pair (untrained: no download) on a few gallery photos."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from core.config import GALLERY_DIR
    from core.execution.runner import RunSettings, run
    from core.images import ImageSource
    from core.records import RunInfo, new_run_id, now_iso
    from core.store import Store, record_into

    sources = [ImageSource.from_path(GALLERY_DIR / n).hashed() for n in PHOTOS]
    with Store(store) as s:
        run_id = new_run_id()
        settings = RunSettings(list(MODELS), "untrained", device="cpu", warmup=0)
        s.start_run(RunInfo(run_id, now_iso(), {"models": list(MODELS)}))
        output = run(sources, settings, run_id=run_id, on_result=record_into(s, run_id, 0.5, sources=sources))
        s.finish_run(run_id, info=output.info)
    return run_id


@contextlib.contextmanager
def server(store: Path, log_path: Path) -> Iterator[str]:
    """`streamlit run dashboard/app.py` over `store` on a free local port (no worker); yields its URL."""
    with serving.streamlit(store, log_path, env={"DETLENS_WORKER_AUTOSTART": "0"}) as url:
        yield url


def page_url(base: str, page: str, run_id: str) -> str:
    return f"{base}/{page}?run={run_id}&t={THRESHOLD}"


def open_page(browser, url: str, size: tuple[int, int]):  # noqa: ANN001, ANN201 - playwright objects
    """A new context and page at `size`, console errors and failed requests collected; the page settled."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    errors: list[str] = []

    def on_response(response) -> None:  # noqa: ANN001
        if response.status >= 400 and not STREAMLIT_DEEP_LINK_PROBE.search(response.url.split("?")[0]):
            errors.append(f"{response.status} {response.url}")

    def on_console(message) -> None:  # noqa: ANN001
        if message.type == "error" and "the server responded with a status of 404" not in message.text:
            errors.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url} {r.failure}"))
    page.goto(url, wait_until="domcontentloaded")
    settle(page)
    return context, page, errors


def settle(page) -> None:  # noqa: ANN001
    """Wait until the script run has ended, every chart is drawn and nothing more is loading (Plotly's code is
    loaded when the first chart appears: settled twice, around the network going idle)."""
    page.wait_for_function(SETTLED_JS, timeout=SETTLE_TIMEOUT_MS)
    page.wait_for_load_state("networkidle", timeout=SETTLE_TIMEOUT_MS)
    page.wait_for_function(SETTLED_JS, timeout=SETTLE_TIMEOUT_MS)


def check_page(browser, base: str, page_path: str, run_id: str, size: tuple[int, int], shots: Path) -> PageLook:  # noqa: ANN001
    """Open one page by link at `size` and check its look; a full-page screenshot goes to `shots`."""
    context, page, errors = open_page(browser, page_url(base, page_path, run_id), size)
    try:
        look = PageLook(page_path or "home", size, console_errors=errors)
        look.clipped = page.evaluate(CLIPPED_JS)
        shots.mkdir(parents=True, exist_ok=True)
        look.screenshot = shots / f"look-{look.page}-{size[0]}x{size[1]}.png"
        # Streamlit scrolls its main block, not the document: the whole page is seen in a window as tall as it (a
        # table draws its header cells once it is in view)
        page.set_viewport_size({"width": size[0], "height": max(size[1], min(page.evaluate(MAIN_HEIGHT_JS), 12_000))})
        settle(page)
        page.wait_for_function(TABLES_DRAWN_JS, timeout=SETTLE_TIMEOUT_MS)
        headers = page.evaluate(HEADERS_JS)
        for wanted in PAGES[page_path]:  # some table of the page shows all these columns without scrolling
            if not any(all(c in shown for c in wanted) for shown in headers):
                look.missing_columns.append(f"no table shows {wanted} (tables show: {headers})")
        page.screenshot(path=str(look.screenshot))
        look.console_errors = list(errors)  # late ones too
        return look
    finally:
        context.close()


def small_png(png: bytes, max_width: int = 1280, colours: int = 128) -> bytes:
    """A screenshot made small for the README: at most `max_width` wide, a palette of `colours` (a few hundred KB)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        im = im.convert("RGB")
        if im.width > max_width:
            im = im.resize((max_width, round(im.height * max_width / im.width)), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        im.quantize(colours, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()
