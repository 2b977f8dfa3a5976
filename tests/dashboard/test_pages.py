"""The dashboard's other pages in Chromium, against the real binary: incidents, freezes,
rollbacks and load shedding, checks (validations, soaks, probes), the two-person rule, a session
that ends while its page is open, and the README's screenshots.

As in test_dashboard.py: each scenario signs in through the sign-in form (a fresh browser
context per person), acts in the page (by keyboard where a person would), checks the outcome in
the page and through the HTTP API, and ends with a full-page screenshot. Nothing waits a fixed
time: the browser side waits on Playwright expectations and page conditions, the API side polls
with deadlines.

Three servers: this module's `server` (scenarios 1 to 4 and 6, which leave it as they found it:
enforce mode, no freeze, no open incident, no probe), `approvals_server` (a settings file with a
two-person rule, scenario 5), and `scene_server` (the README's scene, 7 and 8; never reset).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse

import pytest
from playwright.sync_api import Locator, Page, expect

from conftest import API, Server, Tokens, http_request, start_server
from test_dashboard import (
    HEALTHY_METRICS,
    LIVE_MS,
    assert_not_reloaded,
    mark_no_reload,
    set_mode,
    sign_in,
    url_re,
)

DEADLINE_S = 20.0
POLL_S = 0.1

# The words the sign-in page says when a session has ended (crates/server/src/ui/sign_in.rs).
SESSION_ENDED = "Your session ended"


# Helpers ------------------------------------------------------------------------------------


def poll(what: str, probe, deadline_s: float = DEADLINE_S):
    """Calls `probe` until it returns something truthy (returned), at most `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    wake = threading.Event()
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        wake.wait(POLL_S)


def ok(answer, status: int = 200):
    assert answer.status == status, f"expected {status}, got {answer.status}: {answer.text}"
    return answer.json()


def submit(form: Locator) -> None:
    form.locator("button[type=submit]").first.click()


def result_of(form: Locator) -> Locator:
    return form.locator(":scope > .form-result")


def expect_done(form: Locator) -> None:
    """The form says the API accepted it: `[role=status]` "Done." (not the "Sending…" that is
    aria-busy), and no refusal."""
    status = result_of(form).locator("[role=status]")
    expect(status).to_have_text("Done.")
    expect(result_of(form).locator("[role=alert]")).to_have_count(0)
    expect(result_of(form).locator("[aria-busy=true]")).to_have_count(0)


def expect_refusal(form: Locator, error: dict) -> Locator:
    """The form shows the API's refusal `error` (the `error` object of its JSON answer): the
    reason code (or error code) in the head, the message, every hint."""
    alert = result_of(form).locator("[role=alert]")
    expect(alert).to_be_visible()
    head = alert.locator(".refusal-head")
    expect(head).to_contain_text(error.get("reason") or error["code"])
    expect(alert.locator(".message")).to_have_text(error["message"])
    if error.get("hints"):
        expect(alert.locator("ul.hints li")).to_have_text(error["hints"])
    expect(result_of(form).locator("[role=status]")).to_have_count(0)
    return alert


# Every answer a form showed, even one a live refresh replaced a moment later (the forms inside
# live regions are re-rendered as soon as their change's event arrives).
ANSWER_LOG = """(() => {
    if (window.__dashboardAnswers) return;
    window.__dashboardAnswers = [];
    const record = (node) => {
        if (node.nodeType !== 1) return;
        const found = node.matches('.form-result [role]') ? [node] : [];
        found.push(...node.querySelectorAll('.form-result [role]'));
        for (const e of found) {
            const form = e.closest('form');
            window.__dashboardAnswers.push({
                role: e.getAttribute('role'),
                text: e.textContent,
                api: form ? form.dataset.api : null,
            });
        }
    };
    new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) record(n);
    }).observe(document, { childList: true, subtree: true });
})()"""


def log_answers(page: Page) -> None:
    """Records every answer forms show, in every document this page loads from now on."""
    page.add_init_script(ANSWER_LOG)
    page.evaluate(ANSWER_LOG)


def expect_answered_done(page: Page, api_path: str) -> None:
    """The form posting to `api_path` showed "Done." (perhaps only until the live refresh)."""
    page.wait_for_function(
        """(api) => (window.__dashboardAnswers || []).some(
            a => a.api === api && a.role === 'status' && a.text === 'Done.')""",
        arg=API + api_path,
    )


def tab_to(page: Page, target: Locator, limit: int = 200) -> None:
    """Presses Tab until `target` has the focus (a person's way to a field)."""
    for _ in range(limit):
        if target.evaluate("e => e === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{limit} presses of Tab never reached {target}")


def skip_to_content(page: Page) -> None:
    """The first Tab reaches "Skip to content"; Enter moves the focus to the page's main."""
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()


def wait_live(page: Page) -> None:
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")


def find(items: list[dict], **match) -> dict | None:
    for item in items:
        if all(item.get(k) == v for k, v in match.items()):
            return item
    return None


def incidents_by_api(server: Server, token: str) -> list[dict]:
    return ok(server.api("GET", "/incidents?limit=500", token=token))["incidents"]


# 1 ------------------------------------------------------------------------------------------


def test_incidents_open_escalate_resolve(page: Page, server: Server, tokens: Tokens,
                                         screenshot):
    title = "Checkout webhooks retried twice"
    sign_in(page, server, tokens.developer)
    page.goto("/ui/incidents")
    log_answers(page)
    wait_live(page)
    mark_no_reload(page)

    # The whole form by keyboard: Skip to content, Tab to the title, type, Tab through the
    # selects (typing picks an option), Tab to the button, Enter.
    form = page.locator("form#incident-open")
    skip_to_content(page)
    tab_to(page, form.locator("[name=title]"))
    page.keyboard.type(title)
    page.keyboard.press("Tab")
    expect(form.locator("[name=severity]")).to_be_focused()
    page.keyboard.type("medium")
    expect(form.locator("[name=severity]")).to_have_value("medium")
    page.keyboard.press("Tab")
    expect(form.locator("[name=category]")).to_be_focused()
    page.keyboard.type("operational")
    expect(form.locator("[name=category]")).to_have_value("operational")
    page.keyboard.press("Tab")
    expect(form.locator("[name=environment]")).to_be_focused()
    page.keyboard.type("staging")
    expect(form.locator("[name=environment]")).to_have_value("staging")
    page.keyboard.press("Tab")
    expect(form.locator("button[type=submit]")).to_be_focused()
    page.keyboard.press("Enter")
    expect_done(form)
    expect(form.locator("[name=title]")).to_have_value("")

    # It appears in the list without a reload.
    card = page.locator("#incident-list article.incident", has_text=title)
    expect(card).to_have_count(1)
    expect(card.locator("h3")).to_contain_text("open")
    expect(card.locator("h3")).to_contain_text("medium")
    expect(card).to_contain_text("operational")
    expect(card).to_contain_text("staging")
    expect(card).to_contain_text("alice")
    assert_not_reloaded(page)

    incident = find(incidents_by_api(server, tokens.developer), title=title)
    assert incident, "the API does not list the incident opened in the page"
    assert incident["status"] == "open", incident
    assert incident["severity"] == "medium", incident
    assert incident["category"] == "operational", incident
    assert incident["environment"] == "staging", incident
    assert incident["openedBy"] == "alice", incident
    incident_id = incident["id"]
    card = page.locator(f'#incident-list article[data-incident-id="{incident_id}"]')
    expect(card).to_be_visible()

    # Escalating to a lower severity: the API refuses (400), and the page shows its answer.
    lower = {"severity": "low", "reason": "looks smaller than we thought"}
    refused = server.api("POST", f"/incidents/{incident_id}/escalate", token=tokens.developer,
                         body=lower)
    assert refused.status == 400, f"{refused.status} {refused.text}"
    error = refused.json()["error"]
    escalate = card.locator("form.escalate")
    escalate.locator("[name=severity]").select_option("low")
    escalate.locator("[name=reason]").fill(lower["reason"])
    submit(escalate)
    alert = expect_refusal(escalate, error)
    expect(alert.locator(".refusal-head")).to_contain_text("400")
    if error.get("field"):
        expect(escalate.locator(f'[name="{error["field"]}"]')).to_have_attribute(
            "aria-invalid", "true")
    assert ok(server.api("GET", f"/incidents/{incident_id}", token=tokens.developer))[
        "severity"] == "medium"
    screenshot(page, "incident-escalation-refused")

    # Escalate for real, to high: the card shows it as soon as the event arrives.
    escalate.locator("[name=severity]").select_option("high")
    escalate.locator("[name=reason]").fill("INC-31: failures spreading to EU")
    submit(escalate)
    expect_answered_done(page, f"/incidents/{incident_id}/escalate")
    expect(card.locator("h3")).to_contain_text("high")
    escalated = ok(server.api("GET", f"/incidents/{incident_id}", token=tokens.developer))
    assert escalated["severity"] == "high", escalated
    assert escalated["status"] == "open", escalated

    # The overview lists it while it is open.
    page.goto("/ui/")
    overview = page.locator("#incidents")
    expect(overview.locator("li", has_text=title)).to_have_count(1)
    expect(overview.locator("li", has_text=title)).to_contain_text("high")
    expect(overview.locator("li", has_text=title)).to_contain_text("staging")

    # Resolve by keyboard: type the resolution, Enter. While the field has the focus its
    # region waits; once the focus leaves it, the card shows the incident resolved.
    page.goto("/ui/incidents")
    log_answers(page)
    wait_live(page)
    resolve = card.locator("form.resolve")
    resolve.locator("[name=reason]").focus()
    page.keyboard.type("Provider fixed the retry storm")
    page.keyboard.press("Enter")
    expect_answered_done(page, f"/incidents/{incident_id}/resolve")
    page.keyboard.press("Tab")
    expect(card.locator("h3")).to_contain_text("resolved")
    expect(card.locator("form.escalate")).to_have_count(0)
    expect(card.locator("form.resolve")).to_have_count(0)
    expect(card).to_contain_text("resolved")
    resolved = ok(server.api("GET", f"/incidents/{incident_id}", token=tokens.developer))
    assert resolved["status"] == "resolved", resolved
    assert resolved.get("resolvedAt"), resolved
    screenshot(page, "incidents")

    # And the overview no longer lists it.
    page.goto("/ui/")
    expect(page.locator("#incidents")).to_contain_text("No open incident.")
    expect(page.locator("#incidents li", has_text=title)).to_have_count(0)
    screenshot(page, "incidents-overview")


# 2 ------------------------------------------------------------------------------------------


def freezes_by_api(server: Server, token: str, all_: bool = False) -> list[dict]:
    query = "?all=true" if all_ else ""
    body = ok(server.api("GET", f"/freezes{query}", token=token))
    return body["freezes"]


def test_freeze_blocks_a_production_canary(page: Page, server: Server, tokens: Tokens,
                                           screenshot):
    name = "dashboard-payments-freeze"
    reason = "CHG-77: payment provider migration window"
    sign_in(page, server, tokens.eng_lead)
    page.goto("/ui/freezes")
    wait_live(page)
    mark_no_reload(page)
    form = page.locator("form#freeze-create")
    form.locator("[name=name]").fill(name)
    form.locator("[name=reason]").fill(reason)
    form.locator('input[name=environments][value="production"]').check()
    expect(form.locator("[name=end]")).to_have_value("")
    submit(form)
    expect_done(form)

    card = page.locator("#freeze-list article.freeze", has_text=name)
    expect(card).to_have_count(1)
    expect(card.locator("h3")).to_contain_text("in force")
    expect(card).to_contain_text(reason)
    expect(card).to_contain_text("Environments: production")
    assert_not_reloaded(page)

    freezes = freezes_by_api(server, tokens.eng_lead)
    freeze = find(freezes, name=name)
    assert freeze, f"the API does not list the freeze: {freezes}"
    assert freeze["active"] is True, freeze
    assert freeze["environments"] == ["production"], freeze
    assert freeze["reason"] == reason, freeze
    assert freeze["end"] is None, freeze
    assert freeze["createdBy"] == "erin", freeze
    freeze_id = freeze["id"]
    expect(page.locator(f'#freeze-list article[data-freeze-id="{freeze_id}"]')).to_be_visible()

    # The overview: in force.
    page.goto("/ui/")
    overview = page.locator("#freezes li", has_text=name)
    expect(overview).to_have_count(1)
    expect(overview).to_contain_text("in force")
    expect(overview).to_contain_text(reason)

    # A production canary start is refused with FREEZE, the freeze's reason in the message.
    start = {"environment": "production", "service": "dashboard/frozen",
             "releaseId": "v5.0.0", "deploymentId": "prod-frozen-001"}
    page.goto("/ui/canaries")
    canary_form = page.locator("form#canary-start")
    canary_form.locator("[name=environment]").select_option(start["environment"])
    canary_form.locator("[name=service]").fill(start["service"])
    canary_form.locator("[name=releaseId]").fill(start["releaseId"])
    canary_form.locator("[name=deploymentId]").fill(start["deploymentId"])
    submit(canary_form)
    alert = result_of(canary_form).locator("[role=alert]")
    expect(alert.locator(".refusal-head")).to_contain_text("FREEZE")
    expect(alert.locator(".refusal-head")).to_contain_text("403")
    expect(alert.locator(".message")).to_contain_text(reason)
    expect(alert.locator(".message")).to_contain_text(name)

    answer = server.api("POST", "/canary/start", token=tokens.eng_lead, body=start)
    assert answer.status == 403, f"{answer.status} {answer.text}"
    error = answer.json()["error"]
    assert error["reason"] == "FREEZE", error
    assert reason in error["message"], error
    expect_refusal(canary_form, error)
    service = urllib.parse.quote(start["service"], safe="")
    assert server.api("GET", f"/canary/production?service={service}",
                      token=tokens.eng_lead).status == 404
    screenshot(page, "freeze-canary-refused")

    # End it with its button: it leaves the list.
    page.goto("/ui/freezes")
    log_answers(page)
    wait_live(page)
    card = page.locator(f'#freeze-list article[data-freeze-id="{freeze_id}"]')
    card.get_by_role("button", name=f"End freeze {name}").click()
    expect_answered_done(page, f"/freezes/{freeze_id}")
    expect(card).to_have_count(0)
    assert not find(freezes_by_api(server, tokens.eng_lead), id=freeze_id)
    shown = ok(server.api("GET", f"/freezes/{freeze_id}", token=tokens.eng_lead))
    assert shown["active"] is False, shown
    assert shown["endedBy"] == "erin", shown
    assert shown["endedAt"], shown
    page.goto("/ui/")
    expect(page.locator("#freezes")).to_contain_text("No freeze is in force.")
    screenshot(page, "freeze-ended")


# 3 ------------------------------------------------------------------------------------------


def test_rollback_and_load_shedding(page: Page, server: Server, tokens: Tokens, screenshot):
    reason = "INC-7: 5xx after deploy of v2.4.0"
    service = "dashboard/rollbacks"
    sign_in(page, server, tokens.developer)
    page.goto("/ui/rollbacks")
    log_answers(page)
    wait_live(page)
    mark_no_reload(page)
    form = page.locator("form#rollback-create")
    form.locator("[name=environment]").select_option("staging")
    form.locator("[name=service]").fill(service)
    form.locator("[name=fromVersion]").fill("v2.4.0")
    form.locator("[name=toVersion]").fill("v2.3.9")
    form.locator("[name=reason]").fill(reason)
    submit(form)
    expect_done(form)

    row = page.locator("#rollbacks tr[data-rollback-id]", has_text=reason)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("pending")
    expect(row).to_contain_text("v2.4.0 → v2.3.9")
    expect(row).to_contain_text(f"staging / {service}")
    assert_not_reloaded(page)

    listed = ok(server.api("GET", "/rollbacks?environment=staging", token=tokens.developer))
    rollback = find(listed["rollbacks"], reason=reason)
    assert rollback, listed
    assert rollback["status"] == "pending", rollback
    assert rollback["createdBy"] == "alice", rollback
    # v2.3.9 never ran here: allowed (rollback.require_known_target is off), with a warning.
    assert rollback["knownTarget"] is False, rollback
    expect(row).to_contain_text(rollback["warning"])
    rollback_id = rollback["id"]

    # Staging needs no override (docs/gate.md, docs/canaries-and-rollbacks.md): the developer
    # executes it.
    row = page.locator(f'#rollbacks tr[data-rollback-id="{rollback_id}"]')
    row.get_by_role("button", name=f"Execute rollback {rollback_id}").click()
    expect_answered_done(page, f"/rollback/{rollback_id}/execute")
    expect(row).to_contain_text("executed")
    expect(row.get_by_role("button", name=re.compile("Execute"))).to_have_count(0)
    executed = ok(server.api("GET", f"/rollback/{rollback_id}", token=tokens.developer))
    assert executed["status"] == "executed", executed
    assert executed["executedAt"], executed
    assert executed["executedBy"] == "alice", executed
    assert_not_reloaded(page)
    screenshot(page, "rollbacks")

    # Load shedding in lockdown: LOCKDOWN, as the API says.
    shed = {"environment": "staging", "enabled": True, "percentage": 20,
            "reason": "INC-7: shed batch traffic"}
    try:
        set_mode(server, tokens, "lockdown", "INC-8: dashboard load-shedding test")
        expect(page.locator("#lockdown-banner")).to_be_visible(timeout=LIVE_MS)
        shedding = page.locator("form#load-shedding")
        shedding.locator("[name=environment]").select_option(shed["environment"])
        shedding.locator("[name=enabled]").select_option("true")
        shedding.locator("[name=percentage]").fill(str(shed["percentage"]))
        shedding.locator("[name=reason]").fill(shed["reason"])
        submit(shedding)
        alert = result_of(shedding).locator("[role=alert]")
        expect(alert.locator(".refusal-head")).to_contain_text("LOCKDOWN")
        answer = server.api("POST", "/load-shedding", token=tokens.developer, body=shed)
        assert answer.status == 403, f"{answer.status} {answer.text}"
        error = answer.json()["error"]
        assert error["reason"] == "LOCKDOWN", error
        expect_refusal(shedding, error)
        state = ok(server.api("GET", "/load-shedding/staging", token=tokens.developer))
        assert state["enabled"] is False, state
        expect(page.locator('#releases article[data-environment="staging"]')).to_contain_text(
            "off")
        screenshot(page, "load-shedding-refused")
    finally:
        set_mode(server, tokens, "enforce")
    expect(page.locator("#lockdown-banner")).to_be_hidden(timeout=LIVE_MS)


# 4 ------------------------------------------------------------------------------------------


def test_checks_validation_soak_probe(page: Page, server: Server, tokens: Tokens, screenshot):
    release = "v3.1.0"
    service = "dashboard/checks"
    sign_in(page, server, tokens.eng_lead)
    page.goto("/ui/checks")
    log_answers(page)
    wait_live(page)
    mark_no_reload(page)

    # A validation in staging, then its gates run.
    form = page.locator("form#validation-start")
    form.locator("[name=environment]").select_option("staging")
    form.locator("[name=service]").fill(service)
    form.locator("[name=releaseId]").fill(release)
    submit(form)
    expect_done(form)
    validations = ok(server.api(
        "GET", f"/validations?releaseId={release}&environment=staging", token=tokens.eng_lead))
    views = validations["validations"]
    assert len(views) == 1, views
    assert views[0]["status"] == "pending", views
    assert views[0]["createdBy"] == "erin", views
    validation_id = views[0]["id"]
    card = page.locator(f'#validation-list article[data-validation-id="{validation_id}"]')
    expect(card).to_be_visible()
    expect(card.locator("h3")).to_contain_text(f"{release} in staging / {service}")
    expect(card).to_contain_text("0 run(s)")
    card.get_by_role("button", name="Run the gates").click()
    expect_answered_done(page, f"/validations/{validation_id}/run")
    expect(card).to_contain_text("1 run(s)")
    expect(card.get_by_role("button", name="Run again")).to_be_visible()
    shown = ok(server.api("GET", f"/validations/{validation_id}", token=tokens.eng_lead))
    assert shown["status"] == "passed", shown
    expect(card.locator("h3 .badge")).to_have_text(shown["status"])
    gates = card.locator("ul li")
    expect(gates).to_have_count(len(shown["gates"]))
    for gate in shown["gates"]:
        item = card.locator("ul li", has=page.locator("strong", has_text=gate["name"]))
        expect(item).to_contain_text(gate["status"])
        expect(item).to_contain_text(gate["message"])
    assert_not_reloaded(page)

    # A soak, small: a minute, evaluated every second; aborted with a reason, by keyboard.
    soak_form = page.locator("form#soak-start")
    soak_form.locator("[name=environment]").select_option("staging")
    soak_form.locator("[name=service]").fill(service)
    soak_form.locator("[name=releaseId]").fill(release)
    soak_form.locator("details summary").click()
    soak_form.locator('[name="config.durationMs"]').fill("60000")
    soak_form.locator('[name="config.intervalMs"]').fill("1000")
    submit(soak_form)
    expect_done(soak_form)
    soaks = ok(server.api("GET", f"/soaks?releaseId={release}&environment=staging",
                          token=tokens.eng_lead))["soaks"]
    assert len(soaks) == 1, soaks
    soak = soaks[0]
    assert soak["status"] == "running", soak
    assert soak["config"]["durationMs"] == 60000, soak
    assert soak["config"]["intervalMs"] == 1000, soak
    soak_card = page.locator(f'#soak-list article[data-soak-id="{soak["id"]}"]')
    expect(soak_card.locator("h3")).to_contain_text("running")
    expect(soak_card).to_contain_text(re.compile(r"\d+ s left|\d+ min \d+ s left"))
    abort_reason = "CHG-9: wrong build soaked"
    soak_card.locator("form.abort [name=reason]").focus()
    page.keyboard.type(abort_reason)
    page.keyboard.press("Enter")
    expect_answered_done(page, f"/soaks/{soak['id']}/abort")
    page.keyboard.press("Tab")  # leave the field: its region may refresh
    expect(soak_card.locator("h3")).to_contain_text("aborted")
    expect(soak_card.locator("form.abort")).to_have_count(0)
    aborted = ok(server.api("GET", f"/soaks/{soak['id']}", token=tokens.eng_lead))
    assert aborted["status"] == "aborted", aborted
    assert aborted["result"] == f"aborted by erin: {abort_reason}", aborted
    expect(soak_card).to_contain_text(aborted["result"])
    assert_not_reloaded(page)

    # An http probe of this server's own health; then deleted.
    probe_name = "dashboard-self-health"
    probe_url = server.url + API + "/health"
    probe_form = page.locator("form#probe-create")
    probe_form.locator("[name=name]").fill(probe_name)
    probe_form.locator("[name=kind]").select_option("http")
    probe_form.locator("[name=url]").fill(probe_url)
    probe_form.locator("[name=intervalMs]").fill("1000")
    submit(probe_form)
    expect_done(probe_form)
    row = page.locator("#probes tr[data-probe-id]", has_text=probe_name)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(probe_url)
    expect(row).to_contain_text("http")
    probe = ok(server.api("GET", f"/probes/{probe_name}", token=tokens.eng_lead))
    assert probe["target"] == probe_url, probe
    assert probe["source"] == "api", probe
    probe_id = probe["id"]
    # Checked every second; healthy: it reaches the server it runs in.
    poll("the probe's first healthy check", lambda: ok(server.api(
        "GET", f"/probes/{probe_id}", token=tokens.eng_lead))["status"] == "healthy")
    page.reload()
    row = page.locator(f'#probes tr[data-probe-id="{probe_id}"]')
    expect(row).to_contain_text("healthy")
    screenshot(page, "checks-probe")

    log_answers(page)
    wait_live(page)
    row.get_by_role("button", name=f"Delete probe {probe_name}").click()
    expect_answered_done(page, f"/probes/{probe_id}")
    expect(row).to_have_count(0)
    assert server.api("GET", f"/probes/{probe_id}", token=tokens.eng_lead).status == 404
    screenshot(page, "checks")


# 6 (on this module's server) ----------------------------------------------------------------


def test_revoked_token_ends_the_open_page(new_page, server: Server, tokens: Tokens,
                                          screenshot):
    token = server.create_token("dave", "developer")
    # Two sessions of the same token: one page waits for its live refresh, one submits a form.
    watching = new_page(server, "live")
    sign_in(watching, server, token)
    wait_live(watching)
    acting = new_page(server, "form")
    sign_in(acting, server, token)
    acting.goto("/ui/incidents")
    wait_live(acting)
    session = {c["name"]: c["value"] for c in acting.context.cookies()}["ds_session"]
    assert http_request(server.url + API + "/auth/whoami",
                        headers={"Cookie": f"ds_session={session}"}).status == 200

    server.revoke_token(token)
    assert server.api("GET", "/auth/whoami", token=token).status == 401
    assert http_request(server.url + API + "/auth/whoami",
                        headers={"Cookie": f"ds_session={session}"}).status == 401

    # The form: the API answers 401, the page goes to the sign-in page with the notice.
    title = "Opened after the token was revoked"
    form = acting.locator("form#incident-open")
    form.locator("[name=title]").fill(title)
    form.locator("[name=title]").press("Enter")
    expect(acting).to_have_url(url_re(server, r"/ui/sign-in"))
    expect(acting.locator("main [role=status]")).to_contain_text(SESSION_ENDED)
    expect(acting.locator("form#sign-in")).to_be_visible()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(acting.url).query)
    assert query.get("returnTo") == ["/ui/incidents"], acting.url
    assert not find(incidents_by_api(server, tokens.admin), title=title)
    screenshot(acting, "session-ended-form")

    # The other page: its next live refresh ends on the sign-in page too. Any event will do;
    # here someone else's staging override (incidents are not on the event stream).
    created = ok(server.api("POST", "/security-gate/override", token=tokens.admin, body={
        "action": "deploy.canary.start", "environment": "staging",
        "service": "dashboard/revocation", "ttlMinutes": 5,
        "reason": "CHG-6: an event for the open page"}), 201)
    try:
        expect(watching).to_have_url(url_re(server, r"/ui/sign-in"), timeout=LIVE_MS * 2)
        expect(watching.locator("main [role=status]")).to_contain_text(SESSION_ENDED)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(watching.url).query)
        assert query.get("returnTo") == ["/ui/"], watching.url
        screenshot(watching, "session-ended-live")
        # The ended session's cookie was cleared: the overview asks for a sign-in again.
        watching.goto("/ui/")
        expect(watching).to_have_url(url_re(server, r"/ui/sign-in"))
        expect(watching.locator("form#sign-in")).to_be_visible()
        assert "ds_session" not in {c["name"] for c in watching.context.cookies()}
        screenshot(watching, "session-ended-signed-out")
    finally:
        ok(server.api("DELETE", f"/security-gate/override/{created['id']}",
                      token=tokens.admin))


# 5 ------------------------------------------------------------------------------------------

APPROVALS_SETTINGS = """
[[approvals]]
environments = ["tier:production"]
actions = ["deploy.canary.start"]
required = 2
approver_roles = ["security-team", "eng-lead"]
"""


@pytest.fixture(scope="module")
def approvals_server():
    with start_server(APPROVALS_SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def approvals_tokens(approvals_server: Server) -> Tokens:
    return Tokens(
        admin=approvals_server.admin_token,
        developer=approvals_server.create_token("alice", "developer"),
        eng_lead=approvals_server.create_token("erin", "eng-lead"),
    )


def test_two_person_rule(new_page, approvals_server: Server, approvals_tokens: Tokens,
                         screenshot):
    server, tokens = approvals_server, approvals_tokens
    reason = "CHG-5150: payments hotfix v3.4.1"
    service = "payments"

    # The developer asks.
    alice = new_page(server, "alice")
    sign_in(alice, server, tokens.developer)
    alice.goto("/ui/overrides")
    wait_live(alice)
    form = alice.locator("form#override-request")
    form.locator("[name=action]").select_option("deploy.canary.start")
    form.locator("[name=environment]").select_option("production")
    form.locator("[name=service]").fill(service)
    form.locator("[name=ttlMinutes]").fill("30")
    form.locator("[name=reason]").fill(reason)
    submit(form)
    expect_done(form)

    pending = ok(server.api("GET", "/security-gate/override-requests?status=pending",
                            token=tokens.developer))["requests"]
    request = find(pending, reason=reason)
    assert request, pending
    assert request["requestedBy"] == "alice", request
    assert request["required"] == 2, request
    assert sorted(request["approverRoles"]) == ["eng-lead", "security-team"], request
    assert request["approvals"] == [], request
    request_id = request["id"]

    # Not hers to vote on: listed among the other pending requests, without vote forms.
    mine = alice.locator(f'#requests article[data-request-id="{request_id}"]')
    expect(mine).to_be_visible()
    expect(alice.locator("#requests")).to_contain_text("Nothing awaits your vote.")
    expect(alice.locator("#requests h3", has_text="Other pending requests")).to_be_visible()
    expect(mine.locator("form.approve, form.deny")).to_have_count(0)
    expect(mine).to_contain_text("Approvals: 0 of 2")
    expect(mine).to_contain_text("Requested by alice (developer)")

    # The eng-lead sees it awaiting a vote, with Approve and Deny.
    erin = new_page(server, "erin")
    sign_in(erin, server, tokens.eng_lead)
    erin.goto("/ui/overrides")
    log_answers(erin)
    wait_live(erin)
    card = erin.locator(f'#requests article[data-request-id="{request_id}"]')
    expect(card).to_be_visible()
    awaiting = erin.locator("#requests > article.request")
    expect(awaiting.filter(has_text=reason)).to_have_count(1)
    expect(card.locator("form.approve")).to_be_visible()
    expect(card.locator("form.deny")).to_be_visible()
    expect(card.get_by_role("button", name="Approve")).to_be_visible()
    expect(card.get_by_role("button", name="Deny")).to_be_visible()
    expect(card).to_contain_text(f"deploy.canary.start in production / {service}")

    # Creating the override directly is refused: APPROVALS_REQUIRED.
    body = {"action": "deploy.canary.start", "environment": "production", "service": service,
            "ttlMinutes": 30, "reason": reason}
    create = erin.locator("form#override-create")
    create.locator("[name=action]").select_option(body["action"])
    create.locator("[name=environment]").select_option(body["environment"])
    create.locator("[name=service]").fill(service)
    create.locator("[name=ttlMinutes]").fill("30")
    create.locator("[name=reason]").fill(reason)
    submit(create)
    expect(result_of(create).locator("[role=alert] .refusal-head")).to_contain_text(
        "APPROVALS_REQUIRED")
    refused = server.api("POST", "/security-gate/override", token=tokens.eng_lead, body=body)
    assert refused.status == 403, f"{refused.status} {refused.text}"
    error = refused.json()["error"]
    assert error["reason"] == "APPROVALS_REQUIRED", error
    expect_refusal(create, error)
    overrides = ok(server.api("GET", "/security-gate/overrides", token=tokens.eng_lead))
    assert not overrides["overrides"], overrides
    screenshot(erin, "two-person-direct-refused")

    # First vote: 1 of 2. Erin no longer may vote.
    card.locator("form.approve [name=comment]").fill("reviewed CHG-5150")
    card.get_by_role("button", name="Approve").click()
    expect_answered_done(erin, f"/security-gate/override-requests/{request_id}/approve")
    expect(card).to_contain_text("Approvals: 1 of 2 (erin)")
    expect(card.locator("form.approve, form.deny")).to_have_count(0)
    expect(erin.locator("#requests")).to_contain_text("Nothing awaits your vote.")
    # A vote that does not decide is announced by no event (docs/gate.md, "Events"): the
    # requester's page shows it when read again.
    alice.reload()
    wait_live(alice)
    expect(mine).to_contain_text("Approvals: 1 of 2 (erin)")
    expect(mine.locator("form.approve, form.deny")).to_have_count(0)
    mark_no_reload(alice)
    voted = ok(server.api("GET", f"/security-gate/override-requests/{request_id}",
                          token=tokens.eng_lead))
    assert voted["status"] == "pending", voted
    assert [v["principal"] for v in voted["approvals"]] == ["erin"], voted

    # Second vote, by the security team: approved, the override exists.
    admin = new_page(server, "admin")
    sign_in(admin, server, tokens.admin)
    admin.goto("/ui/overrides")
    log_answers(admin)
    wait_live(admin)
    last = admin.locator(f'#requests article[data-request-id="{request_id}"]')
    expect(last.locator("form.approve")).to_be_visible()
    last.get_by_role("button", name="Approve").click()
    expect_answered_done(admin, f"/security-gate/override-requests/{request_id}/approve")
    expect(last).to_have_count(0)
    row = admin.locator("#overrides tr[data-override-id]", has_text=reason)
    expect(row).to_have_count(1)

    approved = ok(server.api("GET", f"/security-gate/override-requests/{request_id}",
                             token=tokens.admin))
    assert approved["status"] == "approved", approved
    override_id = approved["overrideId"]
    assert override_id, approved
    override = ok(server.api("GET", f"/security-gate/override/{override_id}",
                             token=tokens.admin))
    assert override["status"] == "active", override
    assert sorted(override["approvers"]) == ["admin", "erin"], override
    assert override["service"] == service, override
    row = admin.locator(f'#overrides tr[data-override-id="{override_id}"]')
    expect(row).to_contain_text("deploy.canary.start")
    expect(row).to_contain_text(f"production / {service}")
    expect(row).to_contain_text(re.compile(r"\d+\s*(h|min|s)\s+left"))

    # Everyone's page: the request gone, the override there.
    for viewer in (alice, erin):
        expect(viewer.locator(f'#requests article[data-request-id="{request_id}"]')).to_have_count(
            0, timeout=LIVE_MS)
        expect(viewer.locator(f'#overrides tr[data-override-id="{override_id}"]')).to_be_visible(
            timeout=LIVE_MS)
    assert_not_reloaded(alice)
    screenshot(alice, "two-person-requester")
    screenshot(admin, "two-person-approved")


# 7, 8: the README's scene -------------------------------------------------------------------

README_VIEWPORT = {"width": 1280, "height": 800}
PHONE_VIEWPORT = {"width": 390, "height": 844}
SCENE_LOCKDOWN = "INC-42: leaked deploy key, rotating credentials"


class Pusher:
    """Pushes healthy metrics to a canary every 250 ms from start() to finish() (at most
    5 minutes)."""

    def __init__(self, server: Server, token: str, environment: str, service: str):
        self.path = f"/canary/{environment}/metrics?" + urllib.parse.urlencode(
            {"service": service})
        self.server, self.token = server, token
        self.stop = threading.Event()
        self.answers: list[int] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        deadline = time.monotonic() + 300
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                answer = self.server.api("POST", self.path, token=self.token,
                                         body=HEALTHY_METRICS)
                self.answers.append(answer.status)
            except OSError:
                self.answers.append(-1)
            self.stop.wait(0.25)

    def start(self) -> "Pusher":
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def evaluated(canary: dict) -> int:
    return sum(1 for step in canary.get("steps", []) if step.get("evaluation"))


@pytest.fixture(scope="module")
def scene_server():
    """The README's server: its own, never reset."""
    with start_server() as running:
        yield running


@pytest.fixture(scope="module")
def scene(scene_server: Server):
    """A realistic moment: an open incident, a production freeze, an active override, a staging
    canary of `payments` that stepped up on healthy metrics, and a lockdown (which pauses it)."""
    server = scene_server
    admin = server.admin_token
    lead = server.create_token("priya", "eng-lead")
    developer = server.create_token("ci-payments", "developer")

    ok(server.api("POST", "/incidents", token=developer, body={
        "title": "Elevated 5xx on checkout", "severity": "medium",
        "category": "operational", "environment": "production"}), 201)
    ok(server.api("POST", "/freezes", token=lead, body={
        "name": "holiday-2026", "reason": "Holiday change freeze: production needs an override",
        "environments": ["production"]}), 201)
    ok(server.api("POST", "/security-gate/override", token=lead, body={
        "action": "deploy.canary.start", "environment": "production", "service": "payments",
        "releaseId": "v3.4.1", "ttlMinutes": 120,
        "reason": "CHG-2041: payments hotfix v3.4.1, approved by the CTO"}), 201)

    started = ok(server.api("POST", "/canary/start", token=developer, body={
        "releaseId": "v3.4.1", "environment": "staging", "service": "payments",
        "deploymentId": "stg-payments-3041",
        "config": {"initialPercentage": 10, "incrementPercentage": 20,
                   "incrementInterval": 1000, "maxPercentage": 100}}), 201)
    canary_id = started["id"]
    path = "/canary/staging?service=payments"

    pusher = Pusher(server, developer, "staging", "payments").start()
    try:
        canary = poll("the canary at 30 % or more after two evaluations", lambda: (
            lambda c: c if c["currentPercentage"] >= 30 and evaluated(c) >= 2 else None)(
            ok(server.api("GET", path, token=developer))))
    finally:
        pusher.finish()
    assert canary["currentPercentage"] < 100, canary
    assert 200 in pusher.answers, pusher.answers

    # Lockdown: the canary pauses where it is. Its metrics keep coming, healthy.
    ok(server.api("POST", "/security-gate/mode", token=admin,
                  body={"mode": "lockdown", "reason": SCENE_LOCKDOWN}))
    canary = poll("the canary paused by the lockdown", lambda: (
        lambda c: c if c["phase"] == "paused" else None)(
        ok(server.api("GET", path, token=developer))))
    pusher = Pusher(server, developer, "staging", "payments").start()
    try:
        canary = poll("the paused canary judged healthy again", lambda: (
            lambda c: c if c["phase"] == "paused" and c["status"] == "healthy" else None)(
            ok(server.api("GET", path, token=developer))))
        assert 30 <= canary["currentPercentage"] < 100, canary
        yield {"canary_id": canary_id, "lead": lead, "developer": developer,
               "percentage": canary["currentPercentage"]}
    finally:
        pusher.finish()


def test_readme_screenshots(new_page, scene_server: Server, scene: dict, screenshot):
    server = scene_server
    page = new_page(server, "readme", viewport=README_VIEWPORT)
    sign_in(page, server, scene["lead"])
    wait_live(page)

    banner = page.locator("#lockdown-banner")
    expect(banner).to_be_visible()
    expect(banner.locator(".reason")).to_have_text(SCENE_LOCKDOWN)
    expect(page.locator("#mode")).to_contain_text("lockdown")
    expect(page.locator("#incidents")).to_contain_text("Elevated 5xx on checkout")
    expect(page.locator("#incidents")).to_contain_text("medium")
    freeze = page.locator("#freezes li", has_text="holiday-2026")
    expect(freeze).to_contain_text("in force")
    expect(page.locator("#summary dd a[href='/ui/overrides']")).to_have_text("1")
    row = page.locator(f'#canaries tr[data-canary-id="{scene["canary_id"]}"]')
    expect(row).to_contain_text("payments")
    expect(row).to_contain_text("paused")
    expect(row.locator("td.percentage")).to_have_text(re.compile(r"^\s*([3-9]\d)\s*%\s*$"))
    saved = screenshot(page, "readme-overview")
    assert saved.stat().st_size > 0

    page.goto(f"/ui/canaries/{scene['canary_id']}")
    wait_live(page)
    expect(page.locator("#canary-percentage")).to_have_text(
        re.compile(r"^\s*([3-9]\d)\s*%\s*$"))
    page.wait_for_function(
        "() => document.querySelectorAll('#evaluations tbody tr').length >= 2")
    expect(page.locator("#canary-status")).to_contain_text("paused")
    expect(page.locator("#canary-state")).to_contain_text("LOCKDOWN")
    expect(page.locator("#percentage-chart")).to_be_visible()
    expect(page.locator("#metrics")).to_be_visible()
    expect(banner).to_be_visible()
    screenshot(page, "readme-canary")


def test_phone_layout(new_page, scene_server: Server, scene: dict, screenshot):
    page = new_page(scene_server, "phone", viewport=PHONE_VIEWPORT)
    sign_in(page, scene_server, scene["developer"])
    wait_live(page)
    expect(page.locator(f'#canaries tr[data-canary-id="{scene["canary_id"]}"]')).to_be_attached()
    expect(page.locator("#lockdown-banner")).to_be_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE_VIEWPORT["width"], (
        f"the overview scrolls sideways on a phone: scrollWidth {width} > "
        f"{PHONE_VIEWPORT['width']}"
    )
    screenshot(page, "phone")
