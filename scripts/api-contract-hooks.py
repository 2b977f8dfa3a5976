"""schemathesis hooks for scripts/api-contract (docs/api-contract.md).

Besides the rules below: a 414 (URL too long) is a rejection of invalid data.

The OpenAPI document states every rule JSON Schema can state. A few rules it cannot: one field
compared with another, the clock, the stored state. A request that breaks one of them is
schema-valid and still answered 400, naming the field; the document says so in that field's
description. `positive_data_acceptance` would count such a 400 as a failure. This hook drops
exactly those failures and no others: the operation, the field the server names and the start
of its message must all match an entry below. Every other 400 on schema-valid data still fails
the run, and schemathesis prints how many failures the hook dropped.
"""

import json
import re

import schemathesis

# (method, path, field named in the 400, regular expression its message starts with), each
# with the rule JSON Schema cannot state.
API = "/api/deploy-safety"
ACCEPTED_400 = [
    # Escalation must raise the incident's stored severity.
    ("POST", API + "/incidents/{id}/escalate", "severity", r"severity: escalation must raise the severity"),
    # The version rolled back to must differ from the one rolled back from.
    ("POST", API + "/rollback/create", "toVersion", r"toVersion: must differ from fromVersion"),
    # A canary's initial percentage must not exceed its maximum (either may be defaulted).
    ("POST", API + "/canary/start", "config.initialPercentage", r"config\.initialPercentage: must not exceed maxPercentage"),
    # A soak's interval must not exceed its duration, and make at most 1440 evaluations.
    ("POST", API + "/soaks", "config.intervalMs", r"config\.intervalMs: must be (from 1000 to durationMs|at least \d+ for a durationMs)"),
    # A freeze ends after it starts and, unless it recurs, in the future (the server's clock).
    ("POST", API + "/freezes", "end", r"end: (must be in the future|end \(.*\) must be after start)"),
    # A cron pattern's grammar (croner's, with names, L, W, #) and whether it ever matches are
    # in the field's description; the document's pattern only says it is not blank.
    ("POST", API + "/freezes", "schedule.cron", r"schedule\.cron: `.*` (is not a valid 5-field cron pattern|never matches any date)"),
    # Only a single sign-on session signs out; the caller's credential decides, not the request.
    ("POST", API + "/auth/logout", "session", r"session: only a single sign-on session can sign out"),
]

# The same for the pages that answer browsers (their errors are HTML, not JSON): the page's
# message must match. A callback names a login in progress by its `state`, which only the
# server made: every `state` schemathesis can make is unknown, as the operation says.
ACCEPTED_PAGE_400 = [
    ("GET", API + "/auth/callback", r"<p>(this login's `state` is unknown or was used already|the callback has no `state`)"),
]

# DELETE that ends a record rather than removing it: the record stays readable, its status saying
# so (`over: true`, `status: revoked`), as the operations' descriptions state. `use_after_free`
# expects a 404 after any DELETE; for these two, a 200 afterwards is the documented answer.
KEPT_AFTER_DELETE = re.compile(r"DELETE " + API + r"/(freezes|security-gate/override)/[^/]+$")


def _error(response):
    try:
        body = json.loads(response.content)
    except (ValueError, TypeError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keep every failure except those described above."""
    # A URL longer than 64 KiB is refused by the HTTP layer with 414 (documented on the
    # operations with long query parameters): a rejection of invalid data like any 4xx, which
    # `negative_data_rejection` does not list among the statuses it expects.
    if (
        type(failure).__name__ == "AcceptedNegativeData"
        and response is not None
        and response.status_code == 414
    ):
        return False
    if type(failure).__name__ == "UseAfterFree" and KEPT_AFTER_DELETE.match(getattr(failure, "free", "")):
        return False
    if response is None or response.status_code != 400:
        return True
    if type(failure).__name__ != "RejectedPositiveData":
        return True
    error = _error(response)
    if error is None:
        text = response.text if isinstance(getattr(response, "text", None), str) else ""
        for method, path, pattern in ACCEPTED_PAGE_400:
            if case.method.upper() == method and case.operation.path == path and re.search(pattern, text):
                return False
        return True
    field = error.get("field") or ""
    message = error.get("message") or ""
    for method, path, accepted_field, pattern in ACCEPTED_400:
        if (
            case.method.upper() == method
            and case.operation.path == path
            and field == accepted_field
            and re.match(pattern, message, re.DOTALL)
        ):
            return False
    return True
