"""The live server: two browser sessions at once, and what it refuses over plain HTTP.

Streamlit 1.67 serves with Starlette (streamlit/web/server/starlette/). Uploads go to
``PUT /_stcore/upload_file/{session_id}/{file_id}`` (multipart, one file; ``DELETE`` removes one): a missing or wrong
XSRF token (``_streamlit_xsrf`` cookie + ``X-Xsrftoken`` header) is 403, checked before anything else; an unknown
session is 400; a body over ``server.maxUploadSize`` is 413 (from Content-Length, while streaming, and per file); other
methods are 405. With ``server.enableStaticServing = false`` there is no ``/app/static`` route: such paths get the
app's own page (the single-page app's fallback, as any unknown path does), never a file, and paths with dot segments
are refused (400) by Streamlit's path security middleware. The server fixture runs with ``--server.maxUploadSize 1``.
"""

from __future__ import annotations

import contextlib
import http.client
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.config import GALLERY_DIR
from tests.e2e.ui import choose
from tests.e2e.ui import settle as wait_for_app

SMALL = "ssdlite320_mobilenet_v3_large"
OTHER = "fasterrcnn_resnet50_fpn"
RUN_TIMEOUT_MS = 300_000
CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"
UPLOAD = "/_stcore/upload_file"
MB = 1024 * 1024


# --- helpers -------------------------------------------------------------------------------------------------------


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def request(url: str, method: str = "GET", body=None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of one plain HTTP request; error statuses are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener().open(req, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side normalisation of `..` or percent escapes)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def multipart(name: str, data: bytes, content_type: str = "image/png") -> tuple[bytes, str]:
    """A multipart/form-data body with one file, as the browser sends it; returns (body, Content-Type)."""
    boundary = f"----detlens{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def config_lines() -> list[str]:
    """The setting lines of .streamlit/config.toml: none of them may ever come back over HTTP."""
    lines = [ln.strip() for ln in CONFIG.read_text(encoding="utf-8").splitlines()]
    settings = [ln for ln in lines if "=" in ln and not ln.startswith("#")]
    assert len(settings) > 5
    return settings


def assert_no_config(body: bytes) -> None:
    text = body.decode("utf-8", "replace")
    leaked = [ln for ln in config_lines() if ln in text]
    assert not leaked, f"config.toml content served: {leaked}"


def prepare_run(page, base_url: str, image: Path) -> None:
    """Run page: SSDLite only, untrained, one uploaded image; stops before clicking Run."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/run", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_role("button", name=f"Remove {OTHER}", exact=True).click()
    expect(page.get_by_role("button", name=f"Remove {OTHER}", exact=True)).to_have_count(0)
    wait_for_app(page)
    choose(page, f"Weights: {SMALL}", "untrained")
    wait_for_app(page)
    page.get_by_text("Upload", exact=True).click()
    wait_for_app(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    page.get_by_text("1 image(s) chosen.").wait_for(timeout=60_000)
    wait_for_app(page)


def sidebar_caption(page) -> str:
    return page.locator('[data-testid="stSidebar"]').get_by_text("Session:", exact=False).inner_text()


@pytest.fixture
def two_pages(browser):
    """Two browser sessions: separate contexts, so no cookies or storage are shared."""
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    pages = [ctx.new_page() for ctx in contexts]
    for page in pages:
        page.set_default_timeout(60_000)
    try:
        yield pages
    finally:
        for ctx in contexts:
            ctx.close()


@pytest.fixture
def upload_session(browser, streamlit_server):
    """A live browser session's upload address and XSRF credentials, taken from the upload its page makes.

    Yields (upload URL prefix for that session, cookie header, token). The page stays open, so the session is active.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    puts = []
    page.on("request", lambda r: puts.append(r) if r.method == "PUT" and UPLOAD in r.url else None)
    try:
        page.goto(f"{streamlit_server}/run", wait_until="domcontentloaded")
        wait_for_app(page)
        page.get_by_text("Upload", exact=True).click()
        wait_for_app(page)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(GALLERY_DIR / "cat.jpg"))
        page.get_by_text("1 image(s) chosen.").wait_for()
        assert puts, "the browser's upload was not seen"
        put = puts[0]
        path = urlsplit(put.url).path
        assert path.startswith(f"{UPLOAD}/")
        session_id = path[len(UPLOAD) + 1 :].split("/")[0]
        token = put.headers.get("x-xsrftoken", "")
        cookie = next(c["value"] for c in context.cookies() if c["name"] == "_streamlit_xsrf")
        assert session_id and token
        yield f"{streamlit_server}{UPLOAD}/{session_id}", f"_streamlit_xsrf={cookie}", token
    finally:
        context.close()


# --- two sessions at once ------------------------------------------------------------------------------------------


def test_two_browser_sessions_running_at_once_each_see_only_their_own_results(streamlit_server, two_pages):
    images = [GALLERY_DIR / "cat.jpg", GALLERY_DIR / "coffee.jpg"]
    for page, image in zip(two_pages, images, strict=True):
        prepare_run(page, streamlit_server, image)
    for page in two_pages:  # both click within a moment: the runs overlap on the server
        page.get_by_role("button", name="Run", exact=True).click()
    for page in two_pages:
        page.get_by_text("1 inference(s) added to the session").wait_for(timeout=RUN_TIMEOUT_MS)
        wait_for_app(page)
        assert not page.locator('[data-testid="stException"]').count()
    # each session's own image, not the other's. The sidebar is drawn before the page's script adds the run's rows,
    # so it is read on the next page (a new script run), the Gallery, which lists the session's images too.
    for page, mine, theirs in ((two_pages[0], "cat.jpg", "coffee.jpg"), (two_pages[1], "coffee.jpg", "cat.jpg")):
        page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Gallery").click()
        page.get_by_role("heading", name="Gallery").first.wait_for(timeout=60_000)
        wait_for_app(page)
        assert sidebar_caption(page).startswith("Session: 1 images, 1 inferences,")
        assert page.get_by_text(mine).count() >= 1
        assert page.get_by_text(theirs).count() == 0
    assert request(f"{streamlit_server}/_stcore/health") == (200, b"ok")


# --- uploads -------------------------------------------------------------------------------------------------------


def test_an_upload_with_the_session_and_token_is_accepted(upload_session):
    prefix, cookie, token = upload_session
    body, content_type = multipart("small.png", b"\x89PNG" + b"\x00" * 10_000)
    status, _ = request(
        f"{prefix}/{uuid.uuid4()}", "PUT", body, {"Content-Type": content_type, "Cookie": cookie, "X-Xsrftoken": token}
    )
    assert status == 204  # the control: the refusals below are about the token and the size, nothing else


@pytest.mark.parametrize(
    ("with_cookie", "token"),
    [(False, None), (True, None), (False, "from-cookie"), (True, "2|00000000|00000000000000000000000000000000|0")],
    ids=["nothing", "cookie-only", "token-only", "wrong-token"],
)
def test_an_upload_without_a_valid_xsrf_token_is_refused(upload_session, with_cookie, token):
    prefix, cookie, real_token = upload_session
    body, content_type = multipart("small.png", b"\x89PNG" + b"\x00" * 1000)
    headers = {"Content-Type": content_type}
    if with_cookie:
        headers["Cookie"] = cookie
    if token is not None:
        headers["X-Xsrftoken"] = real_token if token == "from-cookie" else token
    status, answer = request(f"{prefix}/{uuid.uuid4()}", "PUT", body, headers)
    assert status == 403 and b"XSRF" in answer


def test_other_methods_on_the_upload_endpoint_are_refused(upload_session):
    prefix, cookie, token = upload_session
    body, content_type = multipart("small.png", b"\x89PNG" + b"\x00" * 1000)
    for method in ("POST", "PATCH"):
        status, _ = request(f"{prefix}/{uuid.uuid4()}", method, body, {"Content-Type": content_type})
        assert status == 405, method
    status, _ = request(f"{prefix}/{uuid.uuid4()}", "POST", body, {"Content-Type": content_type, "Cookie": cookie,
                                                                    "X-Xsrftoken": token})  # fmt: skip
    assert status == 405


def test_an_upload_to_an_unknown_session_is_refused(upload_session):
    prefix, cookie, token = upload_session
    unknown = prefix.rsplit("/", 1)[0] + f"/{uuid.uuid4()}"
    body, content_type = multipart("small.png", b"\x89PNG" + b"\x00" * 1000)
    headers = {"Content-Type": content_type, "Cookie": cookie, "X-Xsrftoken": token}
    assert request(f"{unknown}/{uuid.uuid4()}", "PUT", body, headers)[0] == 400


def put_answer(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """(status, body) of a PUT whose answer may come before the whole body is sent: the server refuses on the
    Content-Length and closes, so sending can end in a broken pipe while its answer is already here to read."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest("PUT", parts.path)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(key, value)
        conn.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.send(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_an_upload_over_max_upload_size_is_refused(upload_session):
    prefix, cookie, token = upload_session
    body, content_type = multipart("big.png", b"\x89PNG" + b"\x00" * (2 * MB))  # the server allows 1 MB
    headers = {"Content-Type": content_type, "Cookie": cookie, "X-Xsrftoken": token}
    status, answer = put_answer(f"{prefix}/{uuid.uuid4()}", body, headers)
    assert status == 413 and b"too large" in answer.lower()


def test_an_oversized_upload_without_content_length_is_cut_off(upload_session, streamlit_server):
    """Chunked, so the size is only known while streaming: refused once past the limit plus framing margin."""
    prefix, cookie, token = upload_session
    body, content_type = multipart("big.png", b"\x89PNG" + b"\x00" * (3 * MB))
    chunks = (body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024))
    headers = {"Content-Type": content_type, "Cookie": cookie, "X-Xsrftoken": token}
    try:
        status, _ = request(f"{prefix}/{uuid.uuid4()}", "PUT", chunks, headers)
    except (ConnectionError, http.client.HTTPException):
        status = None  # the server answered and closed while the client was still sending: refused too
    assert status in (413, None)
    assert request(f"{streamlit_server}/_stcore/health") == (200, b"ok")


# --- static files and paths ----------------------------------------------------------------------------------------


def test_static_serving_is_off(streamlit_server):
    _, index = request(f"{streamlit_server}/")
    assert b"<html" in index.lower()
    for path in ("/app/static/anything", "/app/static/config.toml", "/app/static/app.py"):
        status, body = raw_get(streamlit_server, path)
        assert status == 404 or (status == 200 and body == index), path  # the app's page, never a file
        assert_no_config(body)


@pytest.mark.parametrize(
    "path",
    [
        "/app/static/../.streamlit/config.toml",
        "/app/static/../../.streamlit/config.toml",
        "/app/static/%2e%2e%2f.streamlit/config.toml",
        "/app/static/%2e%2e/.streamlit/config.toml",
        "/app/static/..%2f.streamlit%2fconfig.toml",
        "/app/static/%2e%2e%2f%2e%2e%2f.streamlit%2fconfig.toml",
        "/app/static/%252e%252e%252f.streamlit/config.toml",
        "/app/static/..%5c.streamlit%5cconfig.toml",
        "/app/static/....//.streamlit/config.toml",
        "/static/../.streamlit/config.toml",
        "/static/%2e%2e/%2e%2e/.streamlit/config.toml",
        "/media/../.streamlit/config.toml",
        "/component/..%2f..%2f.streamlit%2fconfig.toml",
        "/.streamlit/config.toml",
        "//127.0.0.1/.streamlit/config.toml",
    ],
)
def test_paths_out_of_the_app_never_return_the_config_file(streamlit_server, path):
    status, body = raw_get(streamlit_server, path)
    assert status in (200, 400, 404), status  # 200 only as the app's own page
    assert_no_config(body)
