"""A real `streamlit run` of the dashboard for the browser tests and the screenshot script: a free local port, its
own process group (stopped with everything it started), healthy before it is used, its log kept."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = REPO_ROOT / "dashboard" / "app.py"
START_TIMEOUT_S = 90.0  # a loaded 2-core machine imports torch, torchvision and the app in well under this


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    """Streamlit's health endpoint answers ok (never through a proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200 and response.read().strip() == b"ok"
    except OSError:
        return False


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen) -> None:
    """End the server and everything it started: it runs in its own process group."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def streamlit(
    store: Path,
    log_path: Path,
    *,
    app: Path = APP,
    cwd: Path = REPO_ROOT,
    port: int | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """`streamlit run APP` over the run store `store` (extra `args` and `env` on top), logged to `log_path`; yields
    its base URL once healthy; RuntimeError with the log's tail when it exits or is not healthy in START_TIMEOUT_S."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port), "--server.address",
           "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false", *args]  # fmt: skip
    full_env = {**os.environ, "DETLENS_STORE": str(store), "PYTHONUNBUFFERED": "1", **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not healthy(f"{base}/_stcore/health"):
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {proc.returncode} before it was healthy; log:\n"
                                       f"{log_tail(log_path)}")  # fmt: skip
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"streamlit not healthy after {START_TIMEOUT_S:.0f} s; log:\n{log_tail(log_path)}"
                    )
                time.sleep(0.25)
            yield base
        finally:
            stop(proc)
