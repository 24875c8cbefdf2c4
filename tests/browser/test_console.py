"""The console as a campaign team uses it, in a real Chromium against a real server.

Controls are found by role and accessible name (labels, button names), as a person
finds them. Every test also checks that the page raised no script error, broke no
Content-Security-Policy rule, asked no other host for anything and opened no
JavaScript dialog (the confirmations are <dialog> elements, not alert/confirm).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest

from tests.browser.conftest import screenshot_path
from tests.servers import ServeProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Request, ViewportSize

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

VIEWPORT: ViewportSize = {"width": 1280, "height": 860}


@dataclass
class Console:
    page: Page
    base: str
    project_id: str
    user_token_secret: str
    root: dict[str, str]
    problems: list[str] = field(default_factory=list)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The public API, called the way any client calls it (root key)."""
        with httpx.Client(base_url=self.base, headers=self.root, trust_env=False) as client:
            return client.request(method, f"/v1/projects/{self.project_id}{path}", **kwargs)

    def goto(self, route: str) -> None:
        self.page.goto(f"{self.base}/console#{route}")

    def shot(self, name: str) -> None:
        path = screenshot_path(name)
        if path is not None:
            self.page.wait_for_timeout(150)  # let the chart settle its layout
            self.page.screenshot(path=str(path), full_page=True)


def _watch(page: Page, base: str, problems: list[str]) -> None:
    def on_console(message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "TrustedHTML" in text or "Trusted Type" in text:
            problems.append(f"CSP: {text}")

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"a JavaScript {dialog.type} opened: {dialog.message!r}")
        dialog.dismiss()

    def on_request(request: Request) -> None:
        if not request.url.startswith((base + "/", "blob:", "data:")):
            problems.append(f"request to another host: {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", on_dialog)
    page.on("request", on_request)


@pytest.fixture(scope="module")
def console(browser: Browser, server: ServeProcess) -> Iterator[Console]:
    """A tab signed in with the root key, in a project created from the console."""
    from playwright.sync_api import expect  # noqa: PLC0415 (the browser fixture checks it)

    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    _watch(page, server.url, problems)
    # `codepool serve` says where the console is.
    assert f"console: {server.url}/console" in server.log_tail(200)
    page.goto(f"{server.url}/console")
    expect(page.get_by_role("heading", name="Sign in to codepool")).to_be_visible()
    shot = screenshot_path("signin")
    if shot is not None:
        page.screenshot(path=str(shot))

    page.get_by_label("API key").fill(server.root_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Project name").fill("Acme Coffee")
    page.get_by_label("Project id (optional)").fill("acme")
    page.get_by_role("button", name="Create project").click()
    secret = page.get_by_label("User-token secret", exact=True)
    expect(secret).not_to_have_value("")
    user_token_secret = secret.input_value()
    page.get_by_role("button", name="Open Acme Coffee").click()
    expect(page.get_by_role("heading", name="Pools")).to_be_visible()
    # The key is in this tab's session storage, and in no URL and no cookie.
    assert server.root_key not in page.url
    assert context.cookies() == []
    assert page.evaluate("sessionStorage.getItem('codepool.key')") == server.root_key
    yield Console(
        page=page,
        base=server.url,
        project_id="acme",
        user_token_secret=user_token_secret,
        root={"Authorization": f"Bearer {server.root_key}"},
        problems=problems,
    )
    context.close()


@pytest.fixture(autouse=True)
def _clean_page(console: Console) -> Iterator[None]:
    yield
    problems, console.problems[:] = list(console.problems), []
    assert problems == []


def _pool(console: Console, pool_id: str) -> dict[str, Any]:
    r = console.api("GET", f"/pools/{pool_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _pool_id(console: Console) -> str:
    match = re.search(r"#/pools/([^/]+)$", console.page.url)
    assert match, console.page.url
    return match.group(1)


def test_pool_paste_refill_file_upload_and_a_refused_paste(
    console: Console, tmp_path: Path
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    page = console.page
    console.goto("/pools")
    page.get_by_label("Name", exact=True).fill("Summer sale")
    page.get_by_label("Low-stock thresholds").fill("2")
    page.get_by_role("button", name="Create pool").click()
    expect(page.get_by_role("heading", name="Summer sale", exact=True)).to_be_visible()
    pool_id = _pool_id(console)
    assert _pool(console, pool_id)["low_stock_thresholds"] == [2]

    codes = page.get_by_role("textbox", name="Codes")
    status = page.get_by_role("region", name="Add codes").get_by_role("status")
    stock = page.get_by_role("list", name="Stock")

    codes.fill("A1, A2,A3\nA4")
    page.get_by_role("button", name="Upload codes").click()
    expect(status).to_contain_text("Added 4, skipped 0.")
    expect(stock).to_contain_text("4Total")
    expect(stock).to_contain_text("4Available")
    listed = page.get_by_role("table", name="Codes")
    for code in ("A1", "A2", "A3", "A4"):
        expect(listed.get_by_role("cell", name=code, exact=True)).to_be_visible()
    assert _pool(console, pool_id)["total"] == 4

    # Refill, skipping what the pool already holds.
    page.get_by_label("Duplicates").select_option("skip")
    codes.fill("A4\nA5")
    page.get_by_role("button", name="Upload codes").click()
    expect(status).to_contain_text("Added 1, skipped 1.")
    expect(stock).to_contain_text("5Total")

    # A CSV file, sent from disk with a progress bar.
    csv_file = tmp_path / "codes.csv"
    csv_file.write_text("code\nB1\nB2\nB3\n")
    page.get_by_label("Duplicates").select_option("allow")
    page.get_by_label("CSV or TXT file").set_input_files(csv_file)
    page.get_by_role("button", name="Upload file").click()
    expect(status).to_contain_text("Added 3, skipped 0.")
    progress = page.get_by_role("progressbar", name="Upload progress")
    assert progress.evaluate("el => el.value") == 100
    assert _pool(console, pool_id)["total"] == 8

    # One bad entry: refused with its line and position, and nothing stored.
    codes.fill("C1\nC 2, C3")
    page.get_by_role("button", name="Upload codes").click()
    expect(status).to_contain_text("Upload refused: 1 invalid code. Nothing was stored.")
    bad = page.get_by_role("table", name="Invalid codes")
    expect(bad.get_by_role("row").nth(1)).to_have_text(re.compile(r"^\s*2\s*2\s*C 2\s*whitespace"))
    after = console.api("GET", f"/pools/{pool_id}/codes", params={"count": 100}).json()
    assert after["matched"] == 8
    assert "C1" not in {entry["code"] for entry in after["data"]}
    expect(stock).to_contain_text("8Total")
    console.shot("pool-upload")

    # The CSV export (it needs the bearer: fetched, then saved from a Blob).
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0].startswith("code,status")
    assert sorted(row.split(",")[0] for row in rows[1:]) == [
        *(f"A{n}" for n in range(1, 6)),
        *(f"B{n}" for n in range(1, 4)),
    ]

    # Settings: thresholds and notify changed with a PATCH.
    settings = page.get_by_role("form", name="Settings")
    settings.get_by_label("Low-stock thresholds").fill("5, 2")
    settings.get_by_label("Notify emails").fill("ops@example.com")
    settings.get_by_role("button", name="Save settings").click()
    expect(settings.get_by_role("status")).to_have_text("Saved.")
    changed = _pool(console, pool_id)
    assert changed["low_stock_thresholds"] == [5, 2]
    assert changed["notify"]["emails"] == ["ops@example.com"]


def test_reward_purchase_trace_redeem_release_and_the_chart(console: Console) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    page = console.page
    made = console.api("POST", "/pools", json={"name": "Free coffee", "low_stock_thresholds": [5]})
    assert made.status_code == 201, made.text
    pool_id = made.json()["id"]
    upload = console.api(
        "POST",
        f"/pools/{pool_id}/codes",
        content="\n".join(f"COFFEE-{n:03d}" for n in range(40)),
        headers={"Content-Type": "text/plain"},
    )
    assert upload.status_code == 200, upload.text

    console.goto("/rewards")
    page.get_by_label("Reward name").fill("Coffee on us")
    page.get_by_label("Pool").select_option(pool_id)
    page.get_by_label("Per-user limit").fill("2")
    page.get_by_label("Metadata (JSON)").fill('{"points": 500}')
    page.get_by_role("button", name="Create reward").click()
    expect(page.get_by_text("Reward Coffee on us created.")).to_be_visible()
    rewards = page.get_by_role("table", name="Rewards")
    expect(rewards.get_by_role("row", name=re.compile("Coffee on us"))).to_contain_text("40")
    listed = console.api("GET", "/rewards").json()["data"]
    (reward,) = [r for r in listed if r["pool_id"] == pool_id]
    assert reward["per_user_limit"] == 2 and reward["metadata"] == {"points": 500}
    page.get_by_role("button", name="Edit reward Coffee on us").click()
    expect(page.get_by_role("heading", name="Edit reward Coffee on us")).to_be_visible()
    page.get_by_label("Per-user limit").fill("3")
    page.get_by_role("button", name="Save reward").click()
    expect(page.get_by_text("Reward Coffee on us saved.")).to_be_visible()
    assert console.api("GET", f"/rewards/{reward['id']}").json()["per_user_limit"] == 3

    # Two shoppers buy through the API with their own tokens (JWT with an expiry).
    bought = {}
    for user in ("maria@example.com", "li@example.com"):
        token = jwt.encode(
            {"sub": user, "exp": int(time.time()) + 600}, console.user_token_secret, "HS256"
        )
        r = console.api(
            "POST",
            f"/rewards/{reward['id']}/purchase",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201, r.text
        bought[user] = r.json()["code"]
    console.shot("rewards")

    # The trace finds Maria's code; the code look-up redeems it after a confirmation.
    console.goto("/trace")
    page.get_by_label("User id").fill("maria@example.com")
    page.get_by_role("button", name="Find user").click()
    code = bought["maria@example.com"]
    vouchers = page.get_by_role("table", name="Vouchers of maria@example.com")
    expect(vouchers.get_by_role("cell", name=code, exact=True)).to_be_visible()
    events = page.get_by_role("table", name="Events of maria@example.com")
    expect(events).to_contain_text("REDEEMED_VOUCHER")
    page.get_by_role("button", name=f"Look up code {code}").click()
    facts = page.get_by_label(f"Code {code}", exact=True)
    expect(facts).to_contain_text("yes: assigned and not used")
    page.get_by_role("button", name="Redeem code").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Redeem {code}?")
    dialog.get_by_role("button", name="Redeem").click()
    expect(page.get_by_text(f"{code} redeemed.")).to_be_visible()
    expect(facts).to_contain_text("already redeemed")  # the look-up checked it again
    expect(page.get_by_role("button", name="Redeem code")).to_be_disabled()
    validated = console.api("POST", "/codes/validate", json={"code": code}).json()
    assert validated["status"] == "redeemed"

    # Li's checkout failed: release it, which asks first too (cancel, then confirm).
    other = bought["li@example.com"]
    page.get_by_label("Code", exact=True).fill(other)
    page.get_by_role("button", name="Check code").click()
    page.get_by_role("button", name="Release code").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert console.api("POST", "/codes/validate", json={"code": other}).json()["valid"]
    page.get_by_role("button", name="Release code").click()
    page.get_by_role("dialog").get_by_role("button", name="Release").click()
    expect(page.get_by_text(f"{other} released to its pool.")).to_be_visible()
    released = console.api("POST", "/codes/validate", json={"code": other}).json()
    assert released["status"] == "available"
    page.get_by_label("User id").fill("maria@example.com")
    page.get_by_role("button", name="Find user").click()
    expect(vouchers.get_by_role("cell", name="redeemed", exact=True)).to_be_visible()
    console.shot("trace")

    # The pool page: its chart shows what the stats API says.
    console.goto(f"/pools/{pool_id}")
    expect(page.get_by_role("heading", name="Free coffee", exact=True)).to_be_visible()
    stats = console.api("GET", f"/pools/{pool_id}/stats", params={"minutes": 60})
    activity = page.get_by_role("region", name="Activity, last 60 minutes")
    assert stats.status_code == 200, stats.text
    page.get_by_text("Chart data as a table").click()
    table = activity.get_by_role("table", name="Activity per minute")
    expect(table.get_by_role("row")).not_to_have_count(1)
    shown = [
        [int(cell) for cell in row.get_by_role("cell").all_inner_texts()[1:]]
        for row in table.get_by_role("row").all()[1:]
    ]
    series = stats.json()["series"]
    active = [
        [p["issued"], p["redeemed"], p["released"]]
        for p in series
        if p["issued"] or p["redeemed"] or p["released"]
    ]
    assert shown == active
    assert [sum(column) for column in zip(*shown, strict=True)] == [2, 1, 1]
    expect(activity.get_by_role("status")).to_contain_text(re.compile("runs dry at|right now"))
    console.shot("pool")

    # The pool cannot go while the reward draws from it: the 409's reason is shown.
    page.get_by_role("button", name="Delete pool").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete pool").click()
    refusal = page.get_by_role("region", name="Delete").get_by_role("status")
    expect(refusal).to_contain_text("a reward still draws from this pool")
    expect(refusal).to_contain_text(reward["id"])
    assert _pool(console, pool_id)["total"] == 40

    console.goto("/pools")
    pools = page.get_by_role("table", name="Pools")
    expect(pools.get_by_role("row", name=re.compile("Free coffee"))).to_contain_text("39")
    console.shot("pools")


def test_keys_are_shown_once_and_revoked(console: Console) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    page = console.page
    console.goto("/keys")
    page.get_by_label("Key name").fill("Till 4, Berlin")
    page.get_by_label("Role").select_option("pos")
    page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_label("New API key", exact=True)
    expect(new_key).to_have_value(re.compile(r"^cpk_acme\."))
    key = new_key.input_value()
    expect(page.get_by_role("button", name="Copy new api key")).to_be_visible()
    pos = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=console.base, trust_env=False) as client:
        assert client.get("/v1/whoami", headers=pos).json() == {"role": "pos", "project_id": "acme"}
        console.shot("keys")
        page.get_by_role("button", name="Revoke key Till 4, Berlin").click()
        page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
        expect(page.get_by_text("Key Till 4, Berlin revoked.")).to_be_visible()
        assert client.get("/v1/whoami", headers=pos).status_code == 401
    # Not kept anywhere: a reload shows the list without it.
    page.reload()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    expect(page.get_by_label("New API key", exact=True)).to_have_count(0)


def test_an_admin_key_signs_in_to_its_project_and_a_pos_key_is_turned_away(
    console: Console, browser: Browser
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    keys = {}
    for role in ("admin", "pos"):
        r = console.api("POST", "/keys", json={"role": role, "name": f"console {role}"})
        assert r.status_code == 201, r.text
        keys[role] = r.json()["key"]
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        _watch(page, console.base, console.problems)
        page.goto(f"{console.base}/console")
        page.get_by_label("API key").fill(keys["pos"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("This is a point-of-sale key.")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('codepool.key')") is None
        page.get_by_label("API key").fill(keys["admin"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Pools")).to_be_visible()
        expect(page.get_by_role("banner")).to_contain_text("Project acme")
        expect(page.get_by_role("link", name="Switch project")).to_have_count(0)
        expect(page.get_by_role("link", name="Summer sale")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in to codepool")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0
    finally:
        context.close()


def test_the_chart_draws_the_stats_contract_and_refreshes(console: Console) -> None:
    """The console against the contract's stats shape, whatever this server answers
    (served from the page's own network layer): drawn, tabled, forecast, refreshed."""
    from playwright.sync_api import Route, expect  # noqa: PLC0415

    page = console.page
    made = console.api("POST", "/pools", json={"name": "Chart check"})
    assert made.status_code == 201, made.text
    pool_id = made.json()["id"]
    start = (int(time.time()) // 60 - 59) * 60
    empty_at = float(start + 7200)
    answers: list[list[dict[str, int]]] = []

    def stats(route: Route) -> None:
        calls = len(answers)
        series = [
            {"t": start + 60 * i, "issued": (i * 7 + calls) % 5, "redeemed": i % 3, "released": 0}
            for i in range(60)
        ]
        body = {
            "pool_id": pool_id,
            "available": 120,
            "rate_per_minute": 2.5,
            "empty_at": empty_at,
            "series": series,
        }
        answers.append(series)
        route.fulfill(json=body)

    page.route(f"**/v1/projects/acme/pools/{pool_id}/stats?minutes=60", stats)
    # The page's timers on Playwright's clock, which runs on as the real one does, so the
    # wait for the refresh below is a jump forward, not seconds of waiting.
    page.clock.install()
    try:
        console.goto(f"/pools/{pool_id}")
        activity = page.get_by_role("region", name="Activity, last 60 minutes")
        forecast = (
            f"At 2.5 codes a minute, runs dry at {time.strftime('%d %b %Y', time.gmtime(empty_at))}"
        )
        expect(activity.get_by_role("status")).to_contain_text(forecast)
        canvas = activity.get_by_role("img", name=re.compile("per minute"))
        drawn = "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v)"
        assert canvas.evaluate(drawn)
        page.get_by_text("Chart data as a table").click()
        table = activity.get_by_role("table", name="Activity per minute")

        def shown() -> list[list[int]]:
            return [
                [int(cell) for cell in row.get_by_role("cell").all_inner_texts()[1:]]
                for row in table.get_by_role("row").all()[1:]
            ]

        def active(series: list[dict[str, int]]) -> list[list[int]]:
            rows = [[p["issued"], p["redeemed"], p["released"]] for p in series]
            return [row for row in rows if any(row)]

        assert shown() == active(answers[0])
        # Still open a few seconds later: asked again, and the new minutes shown.
        with page.expect_request(re.compile(r"/stats\?minutes=60"), timeout=2000):
            page.clock.fast_forward(8000)
        deadline = time.monotonic() + 3
        while shown() != active(answers[1]) and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert shown() == active(answers[1]) != active(answers[0])
    finally:
        page.unroute(f"**/v1/projects/acme/pools/{pool_id}/stats?minutes=60")


def test_markup_in_codes_and_names_is_shown_as_text(console: Console) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    page = console.page
    name = "<script>alert('pool')</script>"
    made = console.api("POST", "/pools", json={"name": name})
    assert made.status_code == 201, made.text
    console.goto(f"/pools/{made.json()['id']}")
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    markup = "<img/src=x/onerror=alert(1)>"
    page.get_by_role("textbox", name="Codes").fill(markup)
    page.get_by_role("button", name="Upload codes").click()
    expect(page.get_by_text("Added 1, skipped 0.")).to_be_visible()
    cell = page.get_by_role("table", name="Codes").get_by_role("cell", name=markup, exact=True)
    expect(cell).to_have_text(markup)
    assert page.locator("main img, main script").count() == 0
    page.wait_for_timeout(300)  # an onerror would have fired by now
    # The no-dialog and no-CSP-violation checks run after every test (_clean_page).


def test_generate_codes_from_the_pool_page(console: Console) -> None:
    """The Generate form next to the upload: a space too small for the count is refused
    with nothing stored; then the codes are made, with check characters."""
    from playwright.sync_api import expect  # noqa: PLC0415

    from codepool import codegen  # noqa: PLC0415

    page = console.page
    pool_id = console.api("POST", "/pools", json={"name": "Generated"}).json()["id"]
    console.goto(f"/pools/{pool_id}")
    form = page.get_by_role("form", name="Generate")
    status = page.get_by_role("region", name="Generate codes").get_by_role("status")
    form.get_by_label("Pattern").fill("T-####")
    form.get_by_label("How many").fill("25")
    form.get_by_label("Charset").select_option("digits")
    form.get_by_role("button", name="Generate").click()
    expect(status).to_contain_text("Generation refused: the pattern's space is too small")
    assert _pool(console, pool_id)["total"] == 0
    form.get_by_label("Pattern").fill("T-######")
    form.get_by_label("Check character").check()
    form.get_by_role("button", name="Generate").click()
    expect(status).to_contain_text("Generated 25 codes. The pool now holds 25 codes")
    expect(page.get_by_role("list", name="Stock")).to_contain_text("25Total")
    listed = console.api("GET", f"/pools/{pool_id}/codes", params={"count": 100}).json()
    pattern = codegen.parse("T-######", "digits", check_character=True)
    assert len({e["code"] for e in listed["data"]}) == 25
    assert all(pattern.matches(e["code"]) for e in listed["data"])
