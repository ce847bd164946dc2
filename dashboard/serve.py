"""Start the dashboard ready: `python -m dashboard.serve [streamlit run options]` (what `scripts/dev.sh run` starts).

`streamlit run dashboard/app.py` runs the app's script only when a browser connects, so the first page of a fresh
server paid for importing the whole app (torch, torchvision, plotly, pandas, pyarrow: 2.5 s on the 2-core development
machine) and for opening the run it shows (0.5-1.4 s at 2 million boxes). Here both happen before the server listens:
every dashboard module is imported into this process (the script runs of every session find them in sys.modules) and
the newest finished run of the store is opened into the shared caches (its RunFrame, its counts for the sidebar of
every page, its image list, and what Compare and the Gallery first show of it: `dashboard.cache`, process-wide), so a
link to it draws at once. Then everything loaded so far is frozen out of the garbage collector's sight
(`gc.freeze()`): Streamlit runs a full collection after every script run (`runner.postScriptGC`), which walked
torch's millions of objects each time, 0.27 s of every rerun on the 2-vCPU development VM. The server then starts
in this same process with the options given, as `streamlit run` would.
"""

from __future__ import annotations

import gc
import importlib
import logging
import pkgutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import DEFAULT_THRESHOLD
from core.records import models_in

if TYPE_CHECKING:
    from core.analytics import RunFrame

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
SKIPPED = frozenset({"dashboard.app", "dashboard.serve"})  # the script itself runs per session; this module is here

log = logging.getLogger("detlens.serve")


def import_app() -> list[str]:
    """Import every dashboard module (and with them core, torch, plotly): what each page's script imports."""
    import dashboard

    names = [m.name for m in pkgutil.walk_packages(dashboard.__path__, "dashboard.") if m.name not in SKIPPED]
    # Streamlit warns once per cached function that no runtime exists yet: expected here, before the server starts
    logging.getLogger("streamlit.runtime.caching.cache_data_api").setLevel(logging.ERROR)
    for name in names:
        importlib.import_module(name)
    return names


def open_newest_run() -> str | None:
    """Open the store's newest finished run into the run-frame cache; its id, or None when the store has none."""
    from dashboard import cache

    runs = cache.store().list_runs()
    finished = runs[runs["status"] == "finished"]
    if finished.empty:
        return None
    run_id = str(finished["run_id"].iloc[0])  # list_runs is newest first
    rf = cache.run_frame(run_id)
    cache.run_counts(run_id)  # every page's sidebar (0.24 s at 2 million boxes)
    cache.run_images(run_id)  # the Gallery's and Evaluate's image list (0.25 s at 10,000 images)
    warm_default_views(rf)
    return run_id


def warm_default_views(rf: RunFrame) -> None:
    """Build what Compare and the Gallery first show of `rf` with the sidebar's defaults (every model, the default
    threshold, no class filter), into the frame's memo (`dashboard.cache.memo`), where their first script run finds it:
    Compare's latency charts, model card and aggregates, the Gallery's class choices and image table (0.37 s at 2
    million boxes on the development VM, paid here instead of by the first visitor)."""
    from dashboard import runviews

    models = models_in(rf.inferences)
    runviews.compare_static(rf)
    runviews.compare_data(rf, DEFAULT_THRESHOLD)
    runviews.runtime_rows(rf, DEFAULT_THRESHOLD)
    runviews.label_choices(rf, DEFAULT_THRESHOLD)
    runviews.image_table(rf, models, DEFAULT_THRESHOLD, None, disagree=False)


def freeze_loaded() -> int:
    """Move every object alive now (the imported modules, the opened run) out of the collector's generations, so that
    the full collection Streamlit runs after each script run walks only what sessions made since; their number."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def main(argv: list[str] | None = None) -> int:
    """Preload, then `streamlit run dashboard/app.py ARGV` in this process."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    import_app()
    try:
        run_id = open_newest_run()
    except Exception as exc:  # noqa: BLE001 (a store that cannot be read is the pages' to report; the server starts)
        print(f"DetLens: no run opened ahead ({type(exc).__name__}: {exc})", file=sys.stderr)
        run_id = None
    freeze_loaded()
    opened = f", run {run_id} open" if run_id else ""
    print(f"DetLens: app imported{opened} in {time.perf_counter() - t0:.1f} s; starting the server", file=sys.stderr)
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    return stcli.main()


if __name__ == "__main__":
    raise SystemExit(main())
