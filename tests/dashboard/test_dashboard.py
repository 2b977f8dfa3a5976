"""The web dashboard (/ui/) in Chromium, against the real binary.

Each scenario signs in through the sign-in form (a fresh browser context per test), acts in the
page, checks the outcome in the page and through the HTTP API, and ends with a full-page
screenshot. Nothing waits a fixed time: the browser side waits on Playwright expectations, the
API side polls with deadlines.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse

from playwright.sync_api import Page, expect

from conftest import API, Server, Tokens, http_request

DEADLINE_S = 20.0
# "live": a change made through the API shows in an open page within this bound.
LIVE_MS = 3_000
NO_RELOAD_MARK = "__dashboardTestNoReload"

HEALTHY_METRICS = {
    "errorRatePercent": 0.1,
    "latencyP99Ms": 100,
    "baselineLatencyP99Ms": 95,
    "cpuPercent": 30,
    "memoryPercent": 40,
}


def url_re(server: Server, path_pattern: str) -> re.Pattern:
    """The page's URL: `path_pattern` on this server, with any query."""
    return re.compile("^" + re.escape(server.url) + path_pattern + r"(\?.*)?$")


def sign_in(page: Page, server: Server, token: str) -> None:
    """Signs in through the form with the keyboard and waits for the overview."""
    page.goto("/ui/sign-in")
    page.locator("#token").fill(token)
    page.locator("#token").press("Enter")
    expect(page).to_have_url(url_re(server, r"/ui/"))


def mark_no_reload(page: Page) -> None:
    """A marker in the page's window: gone if the page reloads or navigates."""
    page.evaluate(f"window.{NO_RELOAD_MARK} = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate(f"window.{NO_RELOAD_MARK} === true"), (
        "the page reloaded or navigated; it should have updated live"
    )


def session_cookie(page: Page) -> dict:
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert "ds_session" in cookies, f"no ds_session cookie after sign-in: {sorted(cookies)}"
    return cookies["ds_session"]


def set_mode(server: Server, tokens: Tokens, mode: str, reason: str | None = None) -> None:
    body = {"mode": mode}
    if reason is not None:
        body["reason"] = reason
    answer = server.api("POST", "/security-gate/mode", token=tokens.admin, body=body)
    assert answer.status == 200, f"{answer.status} {answer.text}"


# 1 ------------------------------------------------------------------------------------------


def test_sign_in(page: Page, server: Server, tokens: Tokens, screenshot):
    # Without a session: / goes to /ui/, and /ui/ to the sign-in page.
    root = http_request(server.url + "/")
    assert root.status == 303, root
    assert root.headers.get("location") == "/ui/", root.headers
    overview = http_request(server.url + "/ui/")
    assert overview.status == 303, overview
    location = overview.headers.get("location", "")
    assert location.startswith("/ui/sign-in"), location
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(location).query).get("returnTo") == [
        "/ui/"
    ], location

    page.goto("/ui/")
    expect(page).to_have_url(url_re(server, r"/ui/sign-in"))
    expect(page.locator("form#sign-in")).to_be_visible()
    expect(page.locator("#token")).to_have_attribute("type", "password")
    expect(page.locator("#token")).to_have_attribute("name", "token")

    # A bad token: the sign-in page again, saying why.
    page.locator("#token").fill("ds_0000000000000000.not-a-valid-secret")
    page.locator("#token").press("Enter")
    expect(page.locator("[role=alert]").first).to_be_visible()
    expect(page.locator("[role=alert]").first).not_to_have_text("")
    expect(page).to_have_url(url_re(server, r"/ui/sign-in"))
    expect(page.locator("#whoami")).to_have_count(0)

    # The developer's token, with the keyboard: lands on the overview.
    page.locator("#token").fill(tokens.developer)
    page.locator("#token").press("Enter")
    expect(page).to_have_url(url_re(server, r"/ui/"))
    expect(page.locator("#whoami")).to_contain_text("alice")
    expect(page.locator("#whoami")).to_contain_text("developer")

    # Nothing the page's scripts can read holds the token or the session.
    cookie = session_cookie(page)
    assert cookie["httpOnly"], f"the session cookie must be HttpOnly: {cookie}"
    readable = page.evaluate(
        """() => ({
            cookie: document.cookie,
            local: Object.entries(localStorage),
            session: Object.entries(sessionStorage),
        })"""
    )
    assert tokens.developer not in readable["cookie"], readable["cookie"]
    assert cookie["value"] not in readable["cookie"], "the session cookie is readable by JS"
    stored = repr(readable["local"]) + repr(readable["session"])
    assert tokens.developer not in stored, f"the token is in web storage: {stored}"
    assert cookie["value"] not in stored, f"the session is in web storage: {stored}"
    secret = tokens.developer.split(".", 1)[1]
    assert secret not in readable["cookie"] + stored

    # The page contract: the header's navigation, who is signed in, and the overview's parts.
    nav = page.locator("header nav")
    for name, href in [
        ("Overview", "/ui/"),
        ("Canaries", "/ui/canaries"),
        ("Overrides", "/ui/overrides"),
        ("Incidents", "/ui/incidents"),
        ("Freezes", "/ui/freezes"),
        ("Audit", "/ui/audit"),
    ]:
        link = nav.get_by_role("link", name=name, exact=True)
        expect(link).to_have_attribute("href", href)
    expect(page.locator("button#sign-out")).to_be_visible()
    expect(page.locator("#live-status")).not_to_have_text("")
    expect(page.locator("#lockdown-banner")).to_be_hidden()
    # (#canaries, the table of active canaries, is checked with a canary running: scenario 5.)
    for part in ["#mode", "#threat", "#freezes", "#incidents", "#health"]:
        expect(page.locator(part)).to_be_attached()
    expect(page.locator("#mode")).to_contain_text("enforce")
    screenshot(page, "overview")


# 2 ------------------------------------------------------------------------------------------


def test_lockdown_appears_live(page: Page, server: Server, tokens: Tokens, screenshot):
    sign_in(page, server, tokens.developer)
    expect(page.locator("#mode")).to_contain_text("enforce")
    expect(page.locator("#lockdown-banner")).to_be_hidden()
    # The page follows the event stream: wait until it says it is live before changing things.
    expect(page.locator("#live-status")).to_contain_text(re.compile("live", re.I))
    mark_no_reload(page)

    try:
        set_mode(server, tokens, "lockdown", "INC-42 credential leak")
        banner = page.locator("#lockdown-banner")
        expect(banner).to_be_visible(timeout=LIVE_MS)
        expect(banner).to_contain_text("INC-42 credential leak", timeout=LIVE_MS)
        expect(banner).to_have_attribute("role", "alert")
        expect(page.locator("#mode")).to_contain_text(
            re.compile("lockdown", re.I), timeout=LIVE_MS
        )
        assert_not_reloaded(page)
        screenshot(page, "lockdown")
    finally:
        set_mode(server, tokens, "enforce")

    expect(page.locator("#lockdown-banner")).to_be_hidden(timeout=LIVE_MS)
    expect(page.locator("#mode")).to_contain_text(re.compile("enforce", re.I), timeout=LIVE_MS)
    assert_not_reloaded(page)
    screenshot(page, "lockdown-ended")


# 3 ------------------------------------------------------------------------------------------


def test_refused_production_canary_start(page: Page, server: Server, tokens: Tokens, screenshot):
    request = {
        "environment": "production",
        "service": "dashboard/refused",
        "releaseId": "v9.9.9",
        "deploymentId": "prod-dashboard-001",
    }
    sign_in(page, server, tokens.developer)
    page.goto("/ui/canaries")
    form = page.locator("form#canary-start")
    expect(form).to_be_visible()
    form.locator("[name=environment]").select_option("production")
    form.locator("[name=service]").fill(request["service"])
    form.locator("[name=releaseId]").fill(request["releaseId"])
    form.locator("[name=deploymentId]").fill(request["deploymentId"])
    form.locator("[type=submit], button:not([type])").first.click()

    alert = page.locator("#canary-start [role=alert]")
    expect(alert).to_be_visible()
    expect(alert).not_to_have_text("")

    # The same request, as the same principal, straight to the API: the gate's refusal.
    answer = server.api("POST", "/canary/start", token=tokens.developer, body=request)
    assert answer.status == 403, f"{answer.status} {answer.text}"
    error = answer.json()["error"]
    assert error["code"] == "blocked_by_security_gate", error
    assert error["reason"] == "OVERRIDE_REQUIRED", error
    assert error["hints"], error

    expect(alert).to_contain_text(error["message"])
    expect(alert).to_contain_text(error["reason"])
    expect(alert.locator("ul.hints li")).to_have_text(error["hints"])

    # Nothing was started.
    service = urllib.parse.quote(request["service"], safe="")
    status = server.api("GET", f"/canary/production?service={service}", token=tokens.developer)
    assert status.status == 404, f"{status.status} {status.text}"
    screenshot(page, "canary-refused")


# 4 ------------------------------------------------------------------------------------------


def test_create_and_revoke_override(page: Page, server: Server, tokens: Tokens, screenshot):
    reason = "CHG-4242 dashboard browser test"
    service = "dashboard/overrides"
    sign_in(page, server, tokens.eng_lead)
    expect(page.locator("#whoami")).to_contain_text("erin")
    page.goto("/ui/overrides")
    form = page.locator("form#override-create")
    expect(form).to_be_visible()
    form.locator("[name=action]").select_option("deploy.canary.start")
    form.locator("[name=environment]").select_option("production")
    form.locator("[name=service]").fill(service)
    form.locator("[name=ttlMinutes]").fill("30")
    form.locator("[name=reason]").fill(reason)
    form.locator("[type=submit], button:not([type])").first.click()
    # The new override's row appears (the API answered 201), and the form says it is done:
    # a status that is not the "Sending…" shown while the request is on its way.
    expect(page.locator("#overrides tr[data-override-id]", has_text=reason)).to_have_count(1)
    created_status = page.locator("#override-create [role=status]")
    expect(created_status).to_be_visible()
    expect(created_status).not_to_contain_text(re.compile("sending", re.I))
    expect(page.locator("#override-create [role=alert]")).to_be_hidden()

    # The API has it: active, by erin, for 30 minutes.
    listed = server.api("GET", "/security-gate/overrides", token=tokens.eng_lead)
    assert listed.status == 200, listed.text
    body = listed.json()
    overrides = body["overrides"] if isinstance(body, dict) else body
    created = [o for o in overrides if o.get("reason") == reason]
    assert len(created) == 1, overrides
    override = created[0]
    assert override["status"] == "active", override
    assert override["approver"] == "erin", override
    assert override["service"] == service, override
    override_id = override["id"]

    row = page.locator(f'#overrides tr[data-override-id="{override_id}"]')
    expect(row).to_be_visible()
    # "29 min 59 s left", kept current by the page's script.
    expect(row).to_contain_text(re.compile(r"\d+\s*(h|min|s)\s+left", re.I))
    expect(row).to_contain_text(service)

    row.locator("button.revoke").click()
    # The list holds active overrides only: the revoked one leaves it, without a reload.
    expect(row).to_have_count(0, timeout=LIVE_MS)

    shown = server.api("GET", f"/security-gate/override/{override_id}", token=tokens.eng_lead)
    assert shown.status == 200, shown.text
    assert shown.json()["status"] == "revoked", shown.text
    assert shown.json()["revokedBy"] == "erin", shown.text
    screenshot(page, "overrides")


# 5 ------------------------------------------------------------------------------------------


class HealthyMonitoring:
    """Pushes the healthy metrics to a canary every 250 ms, until stopped or the deadline."""

    def __init__(self, server: Server, token: str, environment: str, service: str):
        query = urllib.parse.urlencode({"service": service})
        self.path = f"/canary/{environment}/metrics?{query}"
        self.server, self.token = server, token
        self.stop = threading.Event()
        self.answers: list[int] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                answer = self.server.api("POST", self.path, token=self.token,
                                         body=HEALTHY_METRICS)
                self.answers.append(answer.status)
            except OSError as error:  # the server going away at the end of the module
                self.answers.append(-1)
                print(f"metrics push failed: {error}")
            self.stop.wait(0.25)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(timeout=10)


def test_watch_a_canary_advance(page: Page, server: Server, tokens: Tokens, screenshot):
    service = "dashboard/watch"
    started = server.api("POST", "/canary/start", token=tokens.developer, body={
        "releaseId": "v2.0.0",
        "environment": "staging",
        "service": service,
        "deploymentId": "stg-dashboard-001",
        "config": {"initialPercentage": 10, "incrementPercentage": 40,
                   "incrementInterval": 1000},
    })
    assert started.status == 201, f"{started.status} {started.text}"
    canary = started.json()
    assert canary["currentPercentage"] == 10, canary
    canary_id = canary["id"]

    sign_in(page, server, tokens.developer)
    # The overview lists it among the active canaries: its traffic and its status.
    row = page.locator(f'#canaries tr[data-canary-id="{canary_id}"]')
    expect(row).to_be_visible()
    expect(row.locator("td", has_text=re.compile(r"^\s*10\s*%\s*$"))).to_have_count(1)
    expect(row).to_contain_text(canary["status"])
    expect(row).to_contain_text(service)

    page.goto(f"/ui/canaries/{canary_id}")
    percentage = page.locator("#canary-percentage")
    # No metrics yet: it holds at its first step.
    expect(percentage).to_have_text(re.compile(r"^\s*10\s*%\s*$"))
    expect(page.locator("#canary-status")).not_to_have_text("")
    expect(page.locator("#metrics")).to_be_attached()
    expect(page.locator("#live-status")).to_contain_text(re.compile("live", re.I))
    mark_no_reload(page)

    with HealthyMonitoring(server, tokens.developer, "staging", service) as monitoring:
        # 11 % to 100 %, without reloading.
        expect(percentage).to_have_text(
            re.compile(r"^\s*(1[1-9]|[2-9][0-9]|100)\s*%\s*$"), timeout=DEADLINE_S * 1000
        )
    assert 200 in monitoring.answers, monitoring.answers
    assert_not_reloaded(page)

    chart = page.locator("#percentage-chart")
    expect(chart).to_be_visible()
    assert chart.evaluate("e => e.tagName.toLowerCase()") == "svg"
    expect(page.locator("#evaluations tbody tr").first).to_be_visible()
    assert page.locator("#evaluations tbody tr").count() >= 1
    screenshot(page, "canary")


# 6 ------------------------------------------------------------------------------------------


def test_verify_the_audit_log(page: Page, server: Server, tokens: Tokens, screenshot):
    # Entries of a known action: two gate checks (audited; not a use of anything).
    for _ in range(2):
        checked = server.api("POST", "/security-gate/check", token=tokens.developer, body={
            "action": "deploy.canary.start", "environment": "staging",
            "service": "dashboard/audit",
        })
        assert checked.status == 200, checked.text
    latest = server.api("GET", "/audit?limit=1", token=tokens.developer).json()["entries"][0]
    action = latest["action"]
    by_api = server.api("GET", f"/audit?action={urllib.parse.quote(action)}&limit=1000",
                        token=tokens.developer).json()["entries"]
    verified = server.api("GET", "/audit/verify", token=tokens.developer).json()
    assert verified["valid"] is True, verified

    sign_in(page, server, tokens.developer)
    page.goto("/ui/audit")
    expect(page.locator("#audit-entries tbody tr").first).to_be_visible()
    page.locator("button#verify").click()
    result = page.locator("#verify-result")
    expect(result).to_contain_text(re.compile("verified", re.I))
    assert not re.search(r"not verified|broken|tamper", result.inner_text(), re.I), (
        result.inner_text()
    )
    screenshot(page, "audit-verified")
    unfiltered = page.locator("#audit-entries tbody tr").count()

    action_input = page.locator("form#audit-filter [name=action]")
    action_input.fill(action)
    action_input.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/audit\?(.*&)?action=" + re.escape(
        urllib.parse.quote_plus(action))))
    rows = page.locator("#audit-entries tbody tr")
    expect(rows.first).to_be_visible()
    expect(rows.first).to_contain_text(action)
    count = rows.count()
    assert 2 <= count <= len(by_api), (count, len(by_api))
    assert count < unfiltered, f"the filter left every row: {count} of {unfiltered}"
    for index in range(count):
        expect(rows.nth(index)).to_contain_text(action)
    screenshot(page, "audit")


# 7 ------------------------------------------------------------------------------------------


def test_sign_out(page: Page, server: Server, tokens: Tokens, screenshot):
    sign_in(page, server, tokens.developer)
    cookie = session_cookie(page)
    header = {"Cookie": f"ds_session={cookie['value']}"}
    before = http_request(server.url + API + "/auth/whoami", headers=header)
    assert before.status == 200, f"the session should authenticate: {before.status} {before.text}"
    assert before.json()["principal"] == "alice", before.text

    page.locator("button#sign-out").click()
    expect(page).to_have_url(url_re(server, r"/ui/sign-in"))
    page.goto("/ui/")
    expect(page).to_have_url(url_re(server, r"/ui/sign-in"))
    expect(page.locator("form#sign-in")).to_be_visible()

    after = http_request(server.url + API + "/auth/whoami", headers=header)
    assert after.status == 401, f"the old session still authenticates: {after.status} {after.text}"
    screenshot(page, "signed-out")
