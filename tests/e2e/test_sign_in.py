"""Sign-in of reviewers against a real OpenID Connect provider (oidc-provider-mock on 127.0.0.1), in headless Chromium.

The test starts the provider, writes a secrets.toml with `[auth]` (and `[detlens] allowed_users`) into the working
directory of a `streamlit run` it starts, and drives the provider's login form: a signed-in reviewer's verdict is
stored under their identity; a user outside the allowlist sees only a refusal; a forged identity cookie writes nothing.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.store import Store
from tests.e2e import serving
from tests.e2e.serving import REPO_ROOT
from tests.test_review_pages import RUN, stored_pair_run

ANA, MALLORY = "ana@example.com", "mallory@elsewhere.example"


@contextlib.contextmanager
def provider() -> Iterator[str]:
    """oidc-provider-mock on a free loopback port; yields its issuer URL."""
    oidc = pytest.importorskip("oidc_provider_mock")
    import werkzeug.serving

    app = oidc.app(user_claims=[oidc.User(sub=ANA, claims={"email": ANA, "name": "Ana Reviewer"})])
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextlib.contextmanager
def signed_in_server(workdir: Path, store: Path, issuer: str, log_path: Path) -> Iterator[str]:
    """`streamlit run` from `workdir`, whose .streamlit/ holds the repository's config.toml and a secrets.toml with
    [auth] for `issuer` and an allowlist of ANA."""
    port = serving.free_port()
    base = f"http://127.0.0.1:{port}"
    (workdir / ".streamlit").mkdir(parents=True)
    shutil.copy(REPO_ROOT / ".streamlit" / "config.toml", workdir / ".streamlit" / "config.toml")
    (workdir / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "{base}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        'client_id = "detlens-test"\n'
        'client_secret = "detlens-test-secret"\n'
        f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n'
        "\n[detlens]\n"
        f'allowed_users = ["{ANA}"]\n'
    )
    try:
        with serving.streamlit(store, log_path, cwd=workdir, port=port, args=["--client.showErrorDetails", "full"]):
            yield base
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


def sign_in(page, base: str, wait_for_app, *, user: str) -> None:
    """From the app's sign-in page through the provider's form (a predefined user's button, or the typed subject)."""
    page.goto(f"{base}/review?run={RUN}", wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/oauth2/authorize**", timeout=60_000)
    predefined = page.get_by_role("button", name=user, exact=True)
    if predefined.count():
        predefined.click()
    else:
        page.locator('input[name="sub"]').fill(user)
        page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{base}/**", timeout=60_000)
    wait_for_app(page)


def test_sign_in_review_sign_out_allowlist_and_forged_identity(browser, wait_for_app, artifacts_dir, tmp_path):
    store_dir = tmp_path / "store"
    stored_pair_run(store_dir)
    with (
        provider() as issuer,
        signed_in_server(tmp_path / "app", store_dir, issuer, artifacts_dir / "streamlit-auth.log") as base,
    ):
        # a signed-in, allowed reviewer: their verdict is stored under their identity
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            sign_in(page, base, wait_for_app, user=ANA)
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_text("Ana Reviewer").wait_for(timeout=60_000)
            page.goto(f"{base}/review?run={RUN}", wait_until="domcontentloaded")
            wait_for_app(page)
            page.get_by_text("0 of 3 reviewed by you").wait_for(timeout=60_000)
            assert page.get_by_label("Your name (unverified: sign-in is not set up)").count() == 0
            page.get_by_role("button", name="Both wrong (3)").click()
            page.get_by_text("credited as better").or_(page.get_by_text("Saved")).first.wait_for(timeout=60_000)
            wait_for_app(page)
            page.screenshot(path=str(artifacts_dir / "sign-in-reviewed.png"), full_page=True)
            reviews = Store(store_dir).reviews(RUN)
            assert reviews[["reviewer", "identity", "verdict"]].values.tolist() == [[ANA, "signed-in", "both wrong"]]
            page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/oauth2/end_session**", timeout=60_000)  # Streamlit ends the provider's session too
            page.get_by_role("button", name="End session").click()
            page.wait_for_load_state()
            page.goto(f"{base}/review?run={RUN}", wait_until="domcontentloaded")
            wait_for_app(page)
            page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
            assert page.get_by_text("0 of 3 reviewed by you").count() == 0
        finally:
            context.close()

        # a user the provider signs in but the allowlist does not name: only a refusal
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            sign_in(page, base, wait_for_app, user=MALLORY)
            page.get_by_text("Access refused").wait_for(timeout=60_000)
            page.screenshot(path=str(artifacts_dir / "sign-in-refused.png"), full_page=True)
            assert page.locator('[data-testid="stSidebarNav"]').count() == 0, "no page is reachable"
            assert page.get_by_text("reviewed by you").count() == 0
            assert page.get_by_role("button", name="Both wrong (3)").count() == 0
        finally:
            context.close()

        # a forged identity cookie (not signed with the server's cookie secret): treated as signed out
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        forged = '{"email": "ana@example.com", "name": "Ana Reviewer", "is_logged_in": true}'
        context.add_cookies([{"name": "_streamlit_user", "value": forged, "url": base}])
        page = context.new_page()
        try:
            page.goto(f"{base}/review?run={RUN}", wait_until="domcontentloaded")
            wait_for_app(page)
            page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
            assert page.get_by_role("button", name="Both wrong (3)").count() == 0
        finally:
            context.close()
    assert len(Store(store_dir).reviews(RUN, history=True)) == 1, "only the signed-in reviewer wrote a review"
