"""The test harness itself: offline, throwaway torch cache, clean Streamlit caches, a credited gallery."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import threading
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image

from core.config import GALLERY_DIR

OUTSIDE = [("192.0.2.1", 80), ("203.0.113.7", 443), ("2001:db8::1", 443)]  # documentation ranges (RFC 5737/3849)


# --- network guard -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", OUTSIDE)
def test_outside_connections_are_refused(address):
    with pytest.raises(OSError, match="network disabled in tests"):
        socket.create_connection(address, timeout=1)
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(OSError, match="network disabled in tests"):
        sock.connect(address)


def test_outside_name_lookups_are_refused():
    with pytest.raises(OSError, match="network disabled in tests"):
        socket.getaddrinfo("download.pytorch.org", 443)


def test_urllib_fails_at_once_without_network():
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.URLError, match="network disabled in tests"):
        urllib.request.urlopen("https://download.pytorch.org/models/", timeout=5)


def _serve_once(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        conn.sendall(conn.recv(64).upper())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_localhost_connections_are_allowed(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        thread = threading.Thread(target=_serve_once, args=(server,), daemon=True)
        thread.start()
        with socket.create_connection((host, port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(64) == b"PING"
        thread.join(timeout=5)


def test_ipv6_loopback_is_allowed():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        server.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with server:
        server.listen(1)
        port = server.getsockname()[1]
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(("::1", port))


# --- torch hub cache -----------------------------------------------------------------------------------------------


def test_torch_home_is_a_temporary_folder(torch_home):
    home = Path(os.environ["TORCH_HOME"]).resolve()
    assert home == torch_home.resolve()
    assert home.is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert home != (Path.home() / ".cache" / "torch").resolve()


def test_torch_hub_dir_follows_torch_home(torch_home):
    torch = pytest.importorskip("torch")
    assert Path(torch.hub.get_dir()).resolve().is_relative_to(torch_home.resolve())


@pytest.mark.needs_cuda
def test_needs_cuda_runs_only_with_a_gpu():
    import torch

    assert torch.cuda.is_available()


# --- Streamlit caches are cleared between tests (the second test must recompute) -----------------------------------

_calls: list[int] = []


@st.cache_data
def _square(x: int) -> int:
    _calls.append(x)
    return x * x


def test_streamlit_cache_is_used_within_a_test():
    before = len(_calls)
    assert _square(3) == 9
    assert _square(3) == 9
    assert len(_calls) == before + 1


def test_streamlit_cache_is_empty_in_the_next_test():
    before = len(_calls)
    assert _square(3) == 9
    assert len(_calls) == before + 1  # recomputed: the previous test's value was cleared


# --- gallery -------------------------------------------------------------------------------------------------------


def _licence_rows() -> dict[str, list[str]]:
    """Rows of the table in gallery/LICENSE.md, keyed by the file name in their first cell."""
    rows = {}
    for line in (GALLERY_DIR / "LICENSE.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells and (m := re.fullmatch(r"`?([^`]+\.\w+)`?", cells[0])):
            rows[m.group(1)] = cells
    return rows


def test_gallery_has_enough_decodable_rgb_photos(gallery_images):
    modes = {}
    for path in gallery_images:
        with Image.open(path) as im:
            im.load()
            assert im.width >= 64 and im.height >= 64, path.name
            modes[path.name] = im.mode
    rgb = [name for name, mode in modes.items() if mode == "RGB"]
    assert len(rgb) >= 5, f"want >= 5 RGB photos in gallery/, found {modes}"


def test_every_gallery_file_is_credited(gallery_images):
    rows = _licence_rows()
    names = {p.name for p in gallery_images}
    assert names, "gallery/ holds no images"
    missing = sorted(names - rows.keys())
    assert not missing, f"gallery/LICENSE.md has no row for {missing}"
    stale = sorted(rows.keys() - names)
    assert not stale, f"gallery/LICENSE.md credits files that are not there: {stale}"
    for name, cells in rows.items():
        assert len(cells) >= 5 and all(cells[:5]), f"incomplete LICENSE.md row for {name}: {cells}"


# Every module a timed process (detect, the worker, the bench) or the dashboard imports.
TIMED_IMPORTS = (
    "core", "core.cli", "core.execution.jobs", "core.execution.runner", "core.inference.engine", "core.inference.devices", "core.execution.distributed",
    "core.store", "core.analytics", "core.evaluate", "dashboard.state", "dashboard.cache", "dashboard.launch",
    "dashboard.figures", "dashboard.evaluation", "dashboard.groundtruth",
)  # fmt: skip
THREADING_VARIABLES = re.compile(r"^(OMP_|GOMP_|KMP_|MKL_|OPENBLAS_|BLIS_|VECLIB_|NUMEXPR_|DETLENS_THREADS)")


@pytest.mark.slow
def test_importing_detlens_changes_no_threading_knob_a_timed_model_call_depends_on():
    """Importing core set OMP_WAIT_POLICY=PASSIVE once, which doubled every recorded CPU latency against a user's own
    loop (SSDLite 52.6 -> 101.8 ms on 2 idle cores): no import may set an OpenMP/MKL/BLAS variable, nor torch's threads."""
    import subprocess
    import sys

    code = (
        "import importlib, json, os, re, sys\n"
        f"pattern = re.compile({THREADING_VARIABLES.pattern!r})\n"
        "for k in [k for k in os.environ if pattern.match(k)]:\n"
        "    del os.environ[k]\n"
        "import torch\n"
        "threads = torch.get_num_threads()\n"
        f"for name in {TIMED_IMPORTS!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({'set': sorted(k for k in os.environ if pattern.match(k)),\n"
        "                  'threads': [threads, torch.get_num_threads()]}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["set"] == []
    assert result["threads"][0] == result["threads"][1]
