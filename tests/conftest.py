"""Shared test set-up: every test runs offline, with a throwaway torch hub cache and empty Streamlit caches.

- ``needs_cuda`` tests are skipped when ``torch.cuda.is_available()`` is false.
- ``TORCH_HOME`` points at a temporary folder from the start of the session (``pytest_configure``), so nothing reads
  or writes the real hub cache, and subprocesses (the e2e Streamlit server) inherit it.
- Outside connections are refused: ``socket.socket.connect``/``connect_ex``, ``socket.create_connection`` and
  ``socket.getaddrinfo`` raise ``OSError("network disabled in tests")`` for anything but loopback. Tests never download;
  code that would download fails at once instead of waiting for a timeout.
- ``st.cache_data`` and ``st.cache_resource`` are cleared after each test (when Streamlit was imported).
- ``client.showErrorDetails`` is "full" in tests (the app's config.toml says "type"), so AppTest exceptions carry their
  real message and traceback.
- Streamlit's scan of the installed packages for components runs once per session, not once per AppTest, and each
  app or page script is compiled once per session (per path, modification time and size), not once per AppTest.
- What collection imported is frozen out of the garbage collector's passes (``gc.freeze``).
"""

from __future__ import annotations

import functools
import gc
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import GALLERY_DIR, IMAGE_EXTENSIONS

REPO_ROOT = Path(__file__).resolve().parent.parent
NETWORK_DISABLED = "network disabled in tests"
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_BIND_ALL = frozenset({"", "0.0.0.0", "::"})  # wildcard addresses a local server binds to

_saved_torch_home: str | None = None
_torch_home_dir: str | None = None


# --- session start / end -------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Point TORCH_HOME at a fresh temporary folder before any test module (and torch) is imported."""
    global _saved_torch_home, _torch_home_dir
    _saved_torch_home = os.environ.get("TORCH_HOME")
    _torch_home_dir = tempfile.mkdtemp(prefix="detlens-torch-home-")
    os.environ["TORCH_HOME"] = _torch_home_dir
    # the run store too: never the user's ~/.local/share/detlens (subprocesses such as the e2e server inherit it)
    os.environ["DETLENS_STORE"] = os.path.join(_torch_home_dir, "detlens-store")
    # jobs: AppTest tests run the submitted jobs in-process (tests.factories.finish_jobs); the e2e server turns it on
    os.environ["DETLENS_WORKER_AUTOSTART"] = "0"

    from streamlit import config as st_config

    st_config.set_option("client.showErrorDetails", "full")
    _scan_installed_components_once()
    _compile_each_script_once()


def _scan_installed_components_once() -> None:
    """Every AppTest scans the metadata of every installed distribution for Streamlit components (542 here, 0.13 s per
    AppTest); the installed packages do not change during a session, so the first scan's result serves every AppTest.
    Components are still registered per AppTest from it."""
    from streamlit.components.v2 import manifest_scanner

    scan = functools.cache(manifest_scanner.scan_component_manifests)
    manifest_scanner.scan_component_manifests = lambda max_workers=None: list(scan())


def _compile_each_script_once() -> None:
    """Every AppTest has its own script cache, so it compiled `dashboard/app.py` and its page again, with Streamlit's
    "magic" rewriting of the syntax tree (5-10 ms a page; py-spy put 2.4 s of the quick loop's samples there). Code
    objects are immutable: one compiled script serves every AppTest until the file changes."""
    from streamlit import config as st_config
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    compile_script = ScriptCache.get_bytecode
    compiled: dict[tuple[object, ...], object] = {}

    def get_bytecode(self: ScriptCache, script_path: str) -> object:
        path = os.path.abspath(script_path)
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size, st_config.get_option("runner.magicEnabled"))
        if key not in compiled:
            compiled[key] = compile_script(self, script_path)
        return compiled[key]

    ScriptCache.get_bytecode = get_bytecode


def pytest_unconfigure(config: pytest.Config) -> None:
    if _torch_home_dir is not None:
        shutil.rmtree(_torch_home_dir, ignore_errors=True)
    if _saved_torch_home is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = _saved_torch_home


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests are ``slow`` as well as ``e2e``; skip ``needs_cuda`` tests without a CUDA GPU (torch is imported
    only when such a test was collected)."""
    for item in items:
        if item.get_closest_marker("e2e") or "/tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.slow)
    cuda_items = [item for item in items if item.get_closest_marker("needs_cuda")]
    if not cuda_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in cuda_items:
        item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported (torch, Streamlit, pandas, the code under test: about 440,000 objects) stays alive
    for the whole session; freezing it keeps the collector's full passes to the objects the tests make (measured with
    `gc.callbacks` on three test files: full passes 1.69 s of 31.5 s before, 0.98 s after)."""
    gc.collect()
    gc.freeze()


# --- autouse fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def torch_home() -> Path:
    """The temporary TORCH_HOME of this session (set in ``pytest_configure``, before torch is imported)."""
    assert _torch_home_dir is not None
    os.environ["TORCH_HOME"] = _torch_home_dir
    return Path(_torch_home_dir)


@pytest.fixture(autouse=True)
def private_run_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test writes its runs into a store of its own."""
    path = tmp_path_factory.mktemp("store")
    monkeypatch.setenv("DETLENS_STORE", str(path))
    return path


def _is_local_host(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip().lower().split("%", 1)[0]  # drop an IPv6 zone id
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_local_address(address: object) -> bool:
    """True for loopback (IPv4/IPv6) addresses and for Unix sockets (a path, or an abstract name)."""
    if isinstance(address, (str, bytes)):
        return True  # AF_UNIX
    if isinstance(address, tuple) and address:
        return _is_local_host(address[0])
    return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection that does not stay on this machine."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        if not _is_local_address(address):
            raise OSError(f"{NETWORK_DISABLED}: connect to {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if not _is_local_address(address):
            raise OSError(f"{NETWORK_DISABLED}: connect to {address!r}")
        return real_connect_ex(self, address)

    def create_connection(address: tuple, *args: object, **kwargs: object) -> socket.socket:
        if not _is_local_address(address):
            raise OSError(f"{NETWORK_DISABLED}: connect to {address!r}")
        return real_create_connection(address, *args, **kwargs)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if not (_is_local_host(host) or host in _BIND_ALL):
            raise socket.gaierror(socket.EAI_NONAME, f"{NETWORK_DISABLED}: lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def clear_streamlit_caches() -> Iterator[None]:
    """Empty ``st.cache_data`` and ``st.cache_resource`` after each test, so no test sees another's cached values."""
    yield
    if "streamlit" not in sys.modules:
        return
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


# --- helpers -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def gallery_images() -> list[Path]:
    """The bundled photos in gallery/, sorted by name."""
    return sorted(p for p in GALLERY_DIR.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
