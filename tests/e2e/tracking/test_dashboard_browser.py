"""The dashboard in a real browser (Debian's chromium driven by Playwright, no download):
sign in, see the balance, make a gateway request, watch the balance change without a reload,
open a grant's details, download a statement. A screenshot is kept in test-artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect
from tests.e2e.gateway.conftest import Stack

from creditgate.ledger.credits import parse_amount

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
LIVE_UPDATE_S = 1.0  # the bound: the page shows a gateway request within a second


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is required under CI")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield launched
        launched.close()


def test_dashboard_live_balance_grant_and_statement(tracking_stack: Stack, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = tracking_stack
    services = stack.services
    stack.deploy(name="browser-model")
    org_id, _, secret = stack.org_with_key("Browser Co", "0", scopes=("inference", "read"))
    promo = services.ledger.grant(org_id, parse_amount("20"), kind="promotional", priority=10,
                                  expires_at_us=stack.clock.now_us() + 5 * 86_400_000_000)
    services.ledger.grant(org_id, parse_amount("100"), cost_basis=parse_amount("10"))
    billing = services.extras["billing"]
    billing.set_cycle(org_id, kind="days", length_days=1, timezone="UTC")
    stack.clock.advance(days=1, seconds=60)
    closed = billing.close_org(org_id)
    assert closed and closed[0].statement_id

    page = browser.new_page()
    page.goto(f"{stack.url}/dashboard")
    assert page.url.endswith("/dashboard/sign-in")
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/dashboard/orgs/{org_id}")
    assert secret not in page.url
    page.get_by_role("heading", name="Browser Co", level=1).wait_for()
    available = page.locator("#available")
    assert available.inner_text() == "120"
    # Locator assertions poll from Playwright's own script, which the page's CSP allows (a
    # wait_for_function string would need 'unsafe-eval').
    expect(page.locator("#live-state")).to_have_text("live", timeout=5000)

    stack.openai(secret).chat.completions.create(
        model="browser-model", messages=[{"role": "user", "content": "how much is left"}], max_tokens=10)
    expected = services.ledger.balance(org_id).available
    from creditgate.ledger.credits import format_amount

    # No reload: the page changes by itself, over SSE, within the bound.
    expect(available).to_have_text(format_amount(expected), timeout=LIVE_UPDATE_S * 1000)
    assert format_amount(expected) != "120"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-org.png"), full_page=True)

    page.get_by_role("link", name=promo["grant_id"]).click()
    page.get_by_role("heading", name=f"Grant {promo['grant_id']}").wait_for()
    assert "promotional" in page.locator("dl.grant-details").inner_text()
    assert page.locator("time[data-expires]").inner_text() not in ("", "expired")
    page.go_back()

    with page.expect_download() as download_info:
        page.get_by_role("link", name="JSON").first.click()
    saved = tmp_path / "statement.json"
    download_info.value.save_as(saved)
    import orjson

    document = orjson.loads(saved.read_bytes())
    assert billing.verify_statement(document).ok
    page.close()


def test_dashboard_refuses_keys_without_read_and_other_orgs(tracking_stack: Stack, browser) -> None:  # type: ignore[no-untyped-def]
    stack = tracking_stack
    _, _, inference_only = stack.org_with_key("No Read", "1", scopes=("inference",))
    other_id, _, _ = stack.org_with_key("Other", "1")
    _, _, reader = stack.org_with_key("Reader", "1", scopes=("read",))
    page = browser.new_page()
    page.goto(f"{stack.url}/dashboard/sign-in")
    page.get_by_label("API key").fill(inference_only)
    page.get_by_role("button", name="Sign in").click()
    assert "read" in page.get_by_role("alert").inner_text()
    page.get_by_label("API key").fill(reader)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dashboard/orgs/*")
    response = page.goto(f"{stack.url}/dashboard/orgs/{other_id}")
    assert response is not None and response.status == 403
    cookies = page.context.cookies()
    assert [c["httpOnly"] for c in cookies if c["name"] == "cg_session"] == [True]
    page.close()
