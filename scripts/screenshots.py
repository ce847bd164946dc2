"""The README's screenshots, taken as the browser test of the look takes them (tests/e2e/look.py): a store with one
finished run (untrained headline pair, four gallery photos), a server over it, the Gallery and Compare pages opened
by link at 1280x800 in headless Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/img]

Writes gallery.png and compare.png (full page, reduced to a palette: a few hundred KB each) and prints any problem
the look checks found on those pages.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python scripts/screenshots.py` puts scripts/ on sys.path, not the repository root
    sys.path.insert(0, str(ROOT))

from tests.e2e import look  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SHOTS = {"gallery": "gallery.png", "compare": "compare.png"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    problems = 0
    with tempfile.TemporaryDirectory(prefix="detlens-shots-") as tmp:
        store = Path(tmp) / "store"
        run_id = look.make_store(store)
        with look.server(store, Path(tmp) / "streamlit.log") as url, sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                for page, name in SHOTS.items():
                    result = look.check_page(browser, url, page, run_id, look.SIZES[0], Path(tmp) / "shots")
                    for p in result.problems:
                        print(f"{page}: {p}")
                    problems += len(result.problems)
                    assert result.screenshot is not None
                    args.out.mkdir(parents=True, exist_ok=True)
                    target = args.out / name
                    target.write_bytes(look.small_png(result.screenshot.read_bytes()))
                    print(f"{target}: {target.stat().st_size / 1024:.0f} KB")
            finally:
                browser.close()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
