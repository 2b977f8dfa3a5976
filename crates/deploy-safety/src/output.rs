//! What the CLI prints, and the exit codes machines read.

use std::fmt::Write as _;

use deploy_safety_api_types::{
    AuditListEntry, AuditPage, AuditVerification, ErrorBody, GateStatus, HealthReport,
    OverrideRequestList, OverrideRequestView, OverrideView, ProbeView, ValidationView,
};
use deploy_safety_api_types::{
    CanaryView, EnvironmentList, FreezeList, FreezeView, ReleaseHistory,
};
use deploy_safety_app::CheckpointProof;
use deploy_safety_client::ClientError;
use deploy_safety_core::{Canary, Event, Incident, LoadShedding, Rollback, Soak, SoakEvaluation};
use deploy_safety_core::{Decision, ReasonCode, RequestStatus, Role, Timestamp, Vote};

/// Exit codes. 2 is clap's, for usage errors.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    /// The answer is no: the gate blocked the action (or a check says it would), a
    /// validation failed, or the service is not healthy.
    pub const NO: u8 = 3;
    /// Not authenticated, or not permitted (role, identity).
    pub const REFUSED: u8 = 4;
    /// The audit chain is broken.
    pub const CHAIN_BROKEN: u8 = 5;
}

/// Left-aligned columns, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

fn time(value: Option<Timestamp>) -> String {
    value.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
}

pub fn gate_status(s: &GateStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Mode:              {}", s.mode);
    let _ = writeln!(out, "Threat level:      {}", s.threat_level);
    let _ = writeln!(
        out,
        "Lockdown reason:   {}",
        or_dash(s.lockdown_reason.as_deref())
    );
    if s.lockdown_since.is_some() {
        let _ = writeln!(out, "Lockdown since:    {}", time(s.lockdown_since));
    }
    let _ = writeln!(out, "Active overrides:  {}", s.active_overrides);
    if let Some(at) = s.mode_changed_at {
        let _ = writeln!(
            out,
            "Mode changed:      {at} by {} ({})",
            or_dash(s.mode_changed_by.as_deref()),
            or_dash(s.mode_reason.as_deref())
        );
    }
    if let Some(at) = s.threat_changed_at {
        let _ = writeln!(
            out,
            "Threat changed:    {at} by {} ({})",
            or_dash(s.threat_changed_by.as_deref()),
            or_dash(s.threat_reason.as_deref())
        );
    }
    out
}

pub fn overrides(list: &[OverrideView]) -> String {
    if list.is_empty() {
        return "No overrides.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|o| {
            vec![
                o.record.id.clone(),
                o.record.action.to_string(),
                o.record.environment.to_string(),
                or_dash(o.record.service.as_deref()),
                or_dash(o.record.release_id.as_deref()),
                o.record.approver.clone(),
                o.record.expires_at.to_rfc3339(),
                format!("{:?}", o.status).to_lowercase(),
                o.record.use_count.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "ACTION",
            "ENVIRONMENT",
            "SERVICE",
            "RELEASE",
            "APPROVER",
            "EXPIRES",
            "STATUS",
            "USES",
        ],
        &rows,
    )
}

pub fn override_detail(o: &OverrideView) -> String {
    let r = &o.record;
    let mut out = String::new();
    let _ = writeln!(out, "Override {}", r.id);
    let _ = writeln!(
        out,
        "  Status:       {}",
        format!("{:?}", o.status).to_lowercase()
    );
    let _ = writeln!(out, "  Action:       {} in {}", r.action, r.environment);
    if let Some(service) = &r.service {
        let _ = writeln!(out, "  Service:      {service}");
    }
    let _ = writeln!(out, "  Release:      {}", or_dash(r.release_id.as_deref()));
    let _ = writeln!(out, "  Reason:       {}", r.reason);
    let _ = writeln!(out, "  Approver:     {} ({})", r.approver, r.approver_role);
    if let Some(request) = &r.request_id {
        let _ = writeln!(
            out,
            "  Request:      {request} (its votes: deploy-safety override requests {request})"
        );
    }
    let _ = writeln!(out, "  Created:      {}", r.created_at);
    let _ = writeln!(out, "  Expires:      {}", r.expires_at);
    if let Some(at) = r.revoked_at {
        let _ = writeln!(
            out,
            "  Revoked:      {at} by {}",
            or_dash(r.revoked_by.as_deref())
        );
    }
    let _ = writeln!(out, "  Uses:         {}", r.use_count);
    out
}

/// How long from `now` until `at`, coarsely: `2d3h`, `23h59m`, `29m`, `45s`; `none` once
/// past.
fn time_left(now: Timestamp, at: Timestamp) -> String {
    let seconds = at.millis_since(now) / 1_000;
    if seconds <= 0 {
        return "none".to_owned();
    }
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// `eng-lead or security-team`.
fn roles_or(roles: &[Role]) -> String {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    match names.as_slice() {
        [] => "nobody".to_owned(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// When the override an approved request made expires: its TTL counts from the approval.
fn override_expiry(r: &OverrideRequestView) -> Option<Timestamp> {
    r.decided_at
        .map(|at| at.plus_minutes(i64::from(r.ttl_minutes)))
}

/// One vote, on one line: `lead (eng-lead) at 2026-…Z: the comment`.
fn vote_line(v: &Vote) -> String {
    format!(
        "{} ({}) at {}{}",
        v.principal,
        v.role,
        v.at,
        v.comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default()
    )
}

/// Who the request still waits for: `1 more approval from eng-lead or security-team (not dev,
/// lead)`.
fn still_needed(r: &OverrideRequestView) -> String {
    let have = u32::try_from(r.approvals.len()).unwrap_or(u32::MAX);
    let more = r.required.saturating_sub(have);
    let mut not: Vec<&str> = vec![r.requested_by.as_str()];
    not.extend(r.approvals.iter().map(|v| v.principal.as_str()));
    format!(
        "{more} more approval{} from {} (not {})",
        if more == 1 { "" } else { "s" },
        roles_or(&r.approver_roles),
        not.join(", ")
    )
}

/// An override request: what it asks, who voted, how long it waits, its override.
pub fn override_request(r: &OverrideRequestView, now: Timestamp) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Override request {}: {}",
        r.id,
        r.status.as_str().to_uppercase()
    );
    let _ = writeln!(out, "  Action:        {} in {}", r.action, r.environment);
    let _ = writeln!(out, "  Service:       {}", or_dash(r.service.as_deref()));
    let _ = writeln!(out, "  Release:       {}", or_dash(r.release_id.as_deref()));
    let _ = writeln!(out, "  Reason:        {}", r.reason);
    let _ = writeln!(
        out,
        "  Requested by:  {} ({}) at {}",
        r.requested_by, r.requested_by_role, r.created_at
    );
    let _ = writeln!(
        out,
        "  Approvals:     {}/{} from {}",
        r.approvals.len(),
        r.required,
        roles_or(&r.approver_roles)
    );
    for vote in &r.approvals {
        let _ = writeln!(out, "    approved by {}", vote_line(vote));
    }
    if let Some(denial) = &r.denial {
        let _ = writeln!(out, "  Denied by:     {}", vote_line(denial));
    }
    match r.status {
        RequestStatus::Pending => {
            let _ = writeln!(out, "  Waiting for:   {}", still_needed(r));
            let _ = writeln!(
                out,
                "  Expires:       {} ({} left to vote)",
                r.expires_at,
                time_left(now, r.expires_at)
            );
            let _ = writeln!(
                out,
                "  Override:      none yet; it will last {} minutes from the last approval",
                r.ttl_minutes
            );
        }
        RequestStatus::Approved => {
            let expiry = override_expiry(r);
            let _ = writeln!(
                out,
                "  Override:      {}, {} minutes from {}: until {} unless revoked (deploy-safety override show {})",
                or_dash(r.override_id.as_deref()),
                r.ttl_minutes,
                time(r.decided_at),
                time(expiry),
                or_dash(r.override_id.as_deref()),
            );
        }
        RequestStatus::Denied => {
            let _ = writeln!(out, "  Decided:       {}: no override", time(r.decided_at));
        }
        RequestStatus::Expired => {
            let _ = writeln!(
                out,
                "  Expired:       {} without enough approvals: no override; make a new request",
                r.expires_at
            );
        }
    }
    out
}

/// What a vote did, in one headline, then the request.
pub fn override_vote(r: &OverrideRequestView, now: Timestamp) -> String {
    let headline = match (r.status, r.override_id.as_deref()) {
        (RequestStatus::Approved, Some(id)) => format!(
            "approved: override {id} created, expires {}",
            time(override_expiry(r))
        ),
        (RequestStatus::Pending, _) => format!(
            "counted: {} of {} approvals, waiting for {}",
            r.approvals.len(),
            r.required,
            still_needed(r)
        ),
        (RequestStatus::Denied, _) => format!(
            "denied: {} by {}: no override will be made",
            r.id,
            r.denial.as_ref().map_or("-", |v| v.principal.as_str())
        ),
        (status, _) => format!("{}: {status}", r.id),
    };
    format!("{headline}\n{}", override_request(r, now))
}

pub fn override_requests(list: &OverrideRequestList, now: Timestamp) -> String {
    if list.requests.is_empty() {
        return "No override requests.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .requests
        .iter()
        .map(|r| {
            let voters: Vec<&str> = r.approvals.iter().map(|v| v.principal.as_str()).collect();
            let approvals = if voters.is_empty() {
                format!("0/{}", r.required)
            } else {
                format!("{}/{} ({})", voters.len(), r.required, voters.join(", "))
            };
            let waits = match r.status {
                RequestStatus::Pending => format!("{} left", time_left(now, r.expires_at)),
                RequestStatus::Approved => match override_expiry(r) {
                    Some(at) if at > now => format!("override until {at} unless revoked"),
                    _ => "override expired".to_owned(),
                },
                RequestStatus::Denied => format!(
                    "denied by {}",
                    r.denial.as_ref().map_or("-", |v| v.principal.as_str())
                ),
                RequestStatus::Expired => format!("expired {}", r.expires_at),
            };
            vec![
                r.id.clone(),
                r.status.to_string(),
                r.action.to_string(),
                r.environment.to_string(),
                or_dash(r.service.as_deref()),
                or_dash(r.release_id.as_deref()),
                r.requested_by.clone(),
                approvals,
                waits,
                or_dash(r.override_id.as_deref()),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "STATUS",
            "ACTION",
            "ENVIRONMENT",
            "SERVICE",
            "RELEASE",
            "REQUESTED BY",
            "APPROVALS",
            "TIME",
            "OVERRIDE",
        ],
        &rows,
    );
    if list.truncated {
        out.push_str("(more requests exist; narrow with --status)\n");
    }
    out
}

/// A decision as one headline and its message and hints.
pub fn decision(d: &Decision) -> String {
    let mut out = String::new();
    let release = d
        .release_id
        .as_deref()
        .map(|r| format!(" (release {r})"))
        .unwrap_or_default();
    let verdict = match (d.allowed, d.would_block) {
        (true, false) => format!(
            "ALLOWED  {} in {}{release}: {}",
            d.action, d.environment, d.reason
        ),
        (true, true) => format!(
            "ALLOWED (monitor mode; enforce would block)  {} in {}{release}: {}",
            d.action, d.environment, d.reason
        ),
        (false, _) => format!(
            "BLOCKED  {} in {}{release}: {}",
            d.action, d.environment, d.reason
        ),
    };
    let _ = writeln!(out, "{verdict}");
    let _ = writeln!(out, "  {}", d.message);
    for hint in &d.hints {
        let _ = writeln!(out, "  hint: {hint}");
    }
    out
}

pub fn audit_page(page: &AuditPage) -> String {
    if page.entries.is_empty() {
        return "No audit entries.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = page
        .entries
        .iter()
        .map(|item| match item {
            AuditListEntry::Entry(e) => vec![
                e.seq.to_string(),
                e.at.to_rfc3339(),
                e.principal.clone(),
                e.action.clone(),
                e.environment
                    .map_or_else(|| "-".to_owned(), |v| v.to_string()),
                e.decision.to_string(),
                e.reason.clone(),
            ],
            // Shown as stored, so an investigator sees what was written there.
            AuditListEntry::Corrupt(c) => {
                let raw = |column: &str| {
                    c.raw
                        .get(column)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| "-".to_owned())
                };
                // The stored time, readable when it is still a number.
                let at = raw("at");
                let at = at.parse::<i64>().map_or(at, |millis| {
                    Timestamp::from_unix_millis(millis).to_rfc3339()
                });
                vec![
                    c.seq.to_string(),
                    at,
                    raw("principal"),
                    raw("action"),
                    raw("environment"),
                    "CORRUPT".to_owned(),
                    c.problem.clone(),
                ]
            }
        })
        .collect();
    let mut out = table(
        &[
            "SEQ",
            "TIME",
            "PRINCIPAL",
            "ACTION",
            "ENVIRONMENT",
            "DECISION",
            "REASON",
        ],
        &rows,
    );
    if let Some(cursor) = page.next_cursor {
        let _ = writeln!(out, "(more: --cursor {cursor})");
    }
    out
}

/// What checking kept checkpoints found, for people.
pub fn checkpoint_proof(proof: &CheckpointProof, file: &std::path::Path) -> String {
    let mut out = String::new();
    if proof.failures.is_empty() {
        let _ = write!(
            out,
            "Checkpoints valid: {} in {}, every signature verified, every checkpointed entry held with its signed hash",
            proof.checked,
            file.display()
        );
        if let Some(newest) = &proof.newest {
            let _ = write!(out, "; newest: entry {} at {}", newest.seq, newest.at);
        }
        out.push('\n');
        return out;
    }
    let _ = writeln!(
        out,
        "Checkpoints FAILED: {} of {} in {}:",
        proof.failures.len(),
        proof.checked,
        file.display()
    );
    /// Enough to see what happened; `--json` lists every one.
    const SHOWN: usize = 10;
    for failure in proof.failures.iter().take(SHOWN) {
        let at = match (failure.line, failure.seq) {
            (0, _) => String::new(),
            (line, Some(seq)) => format!("line {line} (entry {seq}): "),
            (line, None) => format!("line {line}: "),
        };
        let _ = writeln!(out, "  {at}{}", failure.problem);
    }
    if proof.failures.len() > SHOWN {
        let _ = writeln!(
            out,
            "  … and {} more (--json lists every one)",
            proof.failures.len() - SHOWN
        );
    }
    out
}

pub fn verification(v: &AuditVerification) -> String {
    match &v.first_broken {
        None => format!(
            "Audit chain valid: {} entries, head hash {}\n",
            v.entries_verified, v.head_hash
        ),
        Some(broken) => format!(
            "Audit chain BROKEN at entry {}: {}\n  {} entries verified before it (the last one's hash {})\n",
            broken.seq, broken.problem, v.entries_verified, v.head_hash
        ),
    }
}

pub fn health(h: &HealthReport) -> String {
    let mut out = format!(
        "Overall health: {}\n",
        format!("{:?}", h.overall_health).to_lowercase()
    );
    if let Some(probes) = &h.probes {
        let rows: Vec<Vec<String>> = probes
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.kind.to_string(),
                    if p.critical { "yes" } else { "no" }.to_owned(),
                    if p.stale {
                        format!("{} (stale)", p.status)
                    } else {
                        p.status.to_string()
                    },
                    time(p.last_checked_at),
                    or_dash(p.last_error.as_deref()),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "PROBE",
                "KIND",
                "CRITICAL",
                "STATUS",
                "LAST CHECK",
                "LAST ERROR",
            ],
            &rows,
        ));
    }
    out
}

pub fn validation(v: &ValidationView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Validation {}: release {} in {}: {}",
        v.validation.id,
        v.validation.release_id,
        v.validation.environment,
        v.status.as_str().to_uppercase()
    );
    if let Some(run) = v.runs.last() {
        let _ = writeln!(
            out,
            "  run {} started {} by {}{}",
            run.number,
            run.started_at,
            run.started_by,
            run.finished_at
                .map(|at| format!(", finished {at}"))
                .unwrap_or_default()
        );
    }
    let rows: Vec<Vec<String>> = v
        .gates
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.kind.to_string(),
                g.status.to_string(),
                format!("{} ms", g.duration_ms),
                g.message.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["GATE", "KIND", "STATUS", "TIME", "MESSAGE"],
        &rows,
    ));
    out
}

pub fn validations(list: &[ValidationView]) -> String {
    if list.is_empty() {
        return "No validations.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                v.validation.id.clone(),
                v.validation.release_id.clone(),
                v.validation.environment.to_string(),
                v.status.to_string(),
                v.runs.len().to_string(),
                v.validation.created_at.to_rfc3339(),
            ]
        })
        .collect();
    table(
        &["ID", "RELEASE", "ENVIRONMENT", "STATUS", "RUNS", "CREATED"],
        &rows,
    )
}

pub fn probes(list: &[ProbeView]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let d = &p.probe.definition;
            vec![
                d.name.clone(),
                d.kind.to_string(),
                d.target.clone(),
                if d.critical { "yes" } else { "no" }.to_owned(),
                if p.stale {
                    format!("{} (stale)", p.probe.state.status)
                } else {
                    p.probe.state.status.to_string()
                },
                p.probe.source.to_string(),
                time(p.probe.state.last_checked_at),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "KIND",
            "TARGET",
            "CRITICAL",
            "STATUS",
            "SOURCE",
            "LAST CHECK",
        ],
        &rows,
    )
}

pub fn probe_detail(p: &ProbeView) -> String {
    let d = &p.probe.definition;
    let s = &p.probe.state;
    let mut out = String::new();
    let _ = writeln!(out, "Probe {} ({})", d.name, p.probe.id);
    let _ = writeln!(out, "  Kind:        {} {}", d.kind, d.target);
    if let (Some(method), Some(expected)) = (&d.method, d.expected_status) {
        let _ = writeln!(out, "  Request:     {method}, expecting {expected}");
    }
    let _ = writeln!(
        out,
        "  Schedule:    every {} ms, timeout {} ms, failing after {} failures, healthy after {} successes",
        d.interval_ms, d.timeout_ms, d.failure_threshold, d.success_threshold
    );
    let _ = writeln!(
        out,
        "  Critical:    {}",
        if d.critical { "yes" } else { "no" }
    );
    let _ = writeln!(out, "  Source:      {}", p.probe.source);
    let _ = writeln!(
        out,
        "  Status:      {}{} ({} failures, {} successes in a row)",
        s.status,
        if p.stale { ", stale" } else { "" },
        s.consecutive_failures,
        s.consecutive_successes
    );
    let _ = writeln!(out, "  Last check:  {}", time(s.last_checked_at));
    let _ = writeln!(out, "  Last error:  {}", or_dash(s.last_error.as_deref()));
    let _ = writeln!(out, "  Next check:  {}", p.probe.next_check_at);
    if let Some(history) = &p.history {
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|r| {
                vec![
                    r.at.to_rfc3339(),
                    r.outcome.to_string(),
                    format!("{} ms", r.latency_ms),
                    or_dash(r.error.as_deref()),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&table(&["TIME", "OUTCOME", "LATENCY", "ERROR"], &rows));
        }
    }
    out
}

pub fn incident(i: &Incident) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Incident {}: {}", i.id, i.title);
    let _ = writeln!(
        out,
        "  {} {} incident in {}, {}",
        i.severity,
        i.category,
        i.environment
            .map_or_else(|| "all environments".to_owned(), |e| e.to_string()),
        i.status
    );
    for event in &i.history {
        let _ = writeln!(
            out,
            "  {}  {} by {} ({}){}",
            event.at,
            event.change,
            event.by,
            event.severity,
            event
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    out
}

pub fn incidents(list: &[Incident]) -> String {
    if list.is_empty() {
        return "No incidents.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.severity.to_string(),
                i.category.to_string(),
                i.environment
                    .map_or_else(|| "all".to_owned(), |e| e.to_string()),
                i.status.to_string(),
                i.opened_at.to_rfc3339(),
                i.title.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "SEVERITY",
            "CATEGORY",
            "ENVIRONMENT",
            "STATUS",
            "OPENED",
            "TITLE",
        ],
        &rows,
    )
}

pub fn canary(v: &CanaryView) -> String {
    let c = &v.canary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Canary {} in {}: release {} (deployment {})",
        c.id, c.environment, c.release_id, c.deployment_id
    );
    let _ = writeln!(
        out,
        "  {}% of traffic, {}, status {}{}",
        c.current_percentage,
        c.phase,
        c.status,
        c.paused_reason
            .as_deref()
            .map(|r| format!(" (paused: {r})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  config: {}% then +{}% every {} ms up to {}%, rollback after {} unhealthy",
        c.config.initial_percentage,
        c.config.increment_percentage,
        c.config.increment_interval,
        c.config.max_percentage,
        c.config.failure_threshold
    );
    let _ = writeln!(out, "  started {} by {}", c.started_at, c.started_by);
    if let Some(next) = c.next_step_at {
        let _ = writeln!(out, "  next evaluation {next}");
    }
    if let Some(evaluation) = &v.current_evaluation {
        let rows: Vec<Vec<String>> = evaluation
            .metrics
            .iter()
            .map(|m| {
                vec![
                    m.metric.clone(),
                    m.value.map_or_else(|| "-".to_owned(), |v| format!("{v}")),
                    m.baseline
                        .map_or_else(|| "-".to_owned(), |v| format!("{v}")),
                    format!("< {} / > {}", m.healthy_below, m.unhealthy_above),
                    m.verdict.to_string(),
                    or_dash(m.note.as_deref()),
                ]
            })
            .collect();
        out.push_str(&table(
            &["METRIC", "VALUE", "BASELINE", "BOUNDS", "VERDICT", "NOTE"],
            &rows,
        ));
    }
    let rows: Vec<Vec<String>> = c
        .steps
        .iter()
        .map(|s| {
            vec![
                s.number.to_string(),
                s.at.to_rfc3339(),
                s.action.to_string(),
                format!("{}% -> {}%", s.from_percentage, s.to_percentage),
                s.evaluation
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |e| e.status.to_string()),
                or_dash(s.note.as_deref()),
            ]
        })
        .collect();
    out.push_str(&table(
        &["STEP", "TIME", "ACTION", "WEIGHT", "STATUS", "NOTE"],
        &rows,
    ));
    out
}

/// One line for `canary watch`.
pub fn canary_line(event: &Event, v: &CanaryView) -> String {
    let c = &v.canary;
    let verdicts: Vec<String> = c
        .steps
        .last()
        .and_then(|s| s.evaluation.as_ref())
        .map(|e| {
            e.metrics
                .iter()
                .map(|m| format!("{}={}", m.metric, m.verdict))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{}  {:<22} {:>3}%  {} {}  {}",
        event.at,
        event.event_type,
        c.current_percentage,
        c.phase,
        c.status,
        verdicts.join(" ")
    )
}

/// One evaluation of a soak, on one line.
pub fn soak_evaluation_line(e: &SoakEvaluation) -> String {
    let errors = e
        .error_rate_percent
        .map_or_else(|| "-".to_owned(), |v| format!("{v}%"));
    let latency = e
        .latency_p99_ms
        .map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
    let latency_bound = e.max_latency_p99_ms.map_or_else(
        || format!("baseline +{}%", e.max_latency_increase_percent),
        |max| format!("{max:.1} ms"),
    );
    let mut line = format!(
        "{}  #{:<3} {:<7}  errors {errors:<8} (< {}%)  p99 {latency:<10} (< {latency_bound})",
        e.evaluated_at, e.number, e.verdict, e.max_error_rate_percent,
    );
    if !e.reasons.is_empty() {
        let _ = write!(line, "  {}", e.reasons.join("; "));
    }
    line
}

/// How a soak ended.
pub fn soak_result(s: &Soak) -> String {
    format!(
        "Soak {} {}: {}",
        s.id,
        s.status.as_str().to_uppercase(),
        s.result.as_deref().unwrap_or("-")
    )
}

pub fn soak(s: &Soak) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Soak {} of release {} in {}{}: {}",
        s.id,
        s.release_id,
        s.environment,
        s.service
            .as_deref()
            .map(|v| format!(" (service {v})"))
            .unwrap_or_default(),
        s.status
    );
    let _ = writeln!(
        out,
        "  {} s, evaluated every {} s: error rate < {}%, p99 latency < baseline + {}%, no new incident",
        s.config.duration_ms / 1_000,
        s.config.interval_ms / 1_000,
        s.config.max_error_rate_percent,
        s.config.max_latency_increase_percent
    );
    let _ = writeln!(
        out,
        "  started {} by {}, ends {}",
        s.started_at, s.started_by, s.ends_at
    );
    if let Some(next) = s.next_evaluation_at {
        let _ = writeln!(out, "  next evaluation {next}");
    }
    if let Some(result) = &s.result {
        let _ = writeln!(out, "  result: {result}");
    }
    for e in &s.evaluations {
        let _ = writeln!(out, "  {}", soak_evaluation_line(e));
    }
    out
}

fn all_or(list: &[String]) -> String {
    if list.is_empty() {
        "all".to_owned()
    } else {
        list.join(",")
    }
}

/// When a freeze is in force, or next will be.
fn freeze_when(f: &FreezeView) -> String {
    match (f.over, f.active, f.next_start) {
        (true, _, _) => "over".to_owned(),
        (false, true, _) => format!(
            "active until {}",
            time(f.active_until).replace('-', "ended by hand")
        ),
        (false, false, Some(start)) => format!("next {} to {}", start, time(f.next_end)),
        (false, false, None) => "no window to come".to_owned(),
    }
}

pub fn freeze(f: &FreezeView) -> String {
    let x = &f.freeze;
    let mut out = String::new();
    let _ = writeln!(out, "Freeze {} ({})", x.name, x.id);
    let _ = writeln!(out, "  status:       {}", freeze_when(f));
    let _ = writeln!(
        out,
        "  kind:         {}",
        if x.hard {
            "hard (no override lifts it)"
        } else {
            "soft (a covering override lifts it)"
        }
    );
    let _ = writeln!(out, "  reason:       {}", x.reason);
    let envs: Vec<String> = x.environments.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "  environments: {}", all_or(&envs));
    let _ = writeln!(out, "  services:     {}", all_or(&x.services));
    let actions: Vec<String> = x.actions.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "  actions:      {}", actions.join(", "));
    match &x.schedule {
        Some(s) => {
            let _ = writeln!(
                out,
                "  schedule:     {} in {}, {} minutes each",
                s.cron(),
                s.time_zone(),
                s.duration_minutes()
            );
            let _ = writeln!(out, "  between:      {} and {}", x.start, time(x.end));
        }
        None => {
            let _ = writeln!(
                out,
                "  window:       {} to {}",
                x.start,
                time(x.end).replace('-', "ended by hand")
            );
        }
    }
    let _ = writeln!(out, "  created:      {} by {}", x.created_at, x.created_by);
    if let Some(at) = x.ended_at {
        let _ = writeln!(
            out,
            "  ended:        {at} by {}{}",
            or_dash(x.ended_by.as_deref()),
            x.end_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    out
}

pub fn freezes(list: &FreezeList) -> String {
    if list.freezes.is_empty() {
        return "No freezes.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .freezes
        .iter()
        .map(|f| {
            let envs: Vec<String> = f
                .freeze
                .environments
                .iter()
                .map(ToString::to_string)
                .collect();
            vec![
                f.freeze.id.clone(),
                f.freeze.name.clone(),
                if f.freeze.hard { "hard" } else { "soft" }.to_owned(),
                all_or(&envs),
                all_or(&f.freeze.services),
                freeze_when(f),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "NAME", "KIND", "ENVIRONMENTS", "SERVICES", "STATUS"],
        &rows,
    );
    if list.truncated {
        out.push_str("(more freezes exist; raise --limit)\n");
    }
    out
}

pub fn environments(list: &EnvironmentList) -> String {
    let rows: Vec<Vec<String>> = list
        .environments
        .iter()
        .map(|e| {
            let from: Vec<String> = e.promotes_from.iter().map(ToString::to_string).collect();
            vec![
                e.name.to_string(),
                e.tier.to_string(),
                if from.is_empty() {
                    "-".to_owned()
                } else {
                    from.join(",")
                },
            ]
        })
        .collect();
    table(&["NAME", "TIER", "PROMOTES FROM"], &rows)
}

pub fn soaks(list: &[Soak]) -> String {
    if list.is_empty() {
        return "No soaks.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.environment.to_string(),
                or_dash(s.service.as_deref()),
                s.release_id.clone(),
                s.status.to_string(),
                format!("{}/{}", s.evaluations.len(), s.config.evaluations()),
                s.started_at.to_rfc3339(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "ENVIRONMENT",
            "SERVICE",
            "RELEASE",
            "STATUS",
            "EVALUATIONS",
            "STARTED",
        ],
        &rows,
    )
}

pub fn canaries(list: &[Canary]) -> String {
    if list.is_empty() {
        return "No canaries.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.environment.to_string(),
                c.release_id.clone(),
                format!("{}%", c.current_percentage),
                c.phase.to_string(),
                c.status.to_string(),
                c.started_at.to_rfc3339(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "ENVIRONMENT",
            "RELEASE",
            "WEIGHT",
            "PHASE",
            "STATUS",
            "STARTED",
        ],
        &rows,
    )
}

pub fn rollback(r: &Rollback) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Rollback {} in {}: {} -> {}: {}{}",
        r.id,
        r.environment,
        r.from_version,
        r.to_version,
        r.status,
        if r.automatic { " (automatic)" } else { "" }
    );
    let _ = writeln!(out, "  reason: {}", r.reason);
    let _ = writeln!(out, "  created {} by {}", r.created_at, r.created_by);
    if let Some(warning) = &r.warning {
        let _ = writeln!(out, "  warning: {warning}");
    }
    if let Some(at) = r.executed_at {
        let _ = writeln!(
            out,
            "  executed {at} by {}",
            or_dash(r.executed_by.as_deref())
        );
    }
    if let Some(message) = &r.outcome_message {
        let _ = writeln!(out, "  outcome: {message}");
    }
    out
}

pub fn rollbacks(list: &[Rollback]) -> String {
    if list.is_empty() {
        return "No rollbacks.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.environment.to_string(),
                format!("{} -> {}", r.from_version, r.to_version),
                r.status.to_string(),
                if r.automatic { "yes" } else { "no" }.to_owned(),
                r.created_at.to_rfc3339(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "ENVIRONMENT",
            "VERSIONS",
            "STATUS",
            "AUTOMATIC",
            "CREATED",
        ],
        &rows,
    )
}

pub fn releases(h: &ReleaseHistory) -> String {
    let mut out = format!(
        "Running in {}: {}\n",
        h.environment,
        or_dash(h.current.as_deref())
    );
    let rows: Vec<Vec<String>> = h
        .releases
        .iter()
        .map(|r| {
            vec![
                r.at.to_rfc3339(),
                r.release_id.clone(),
                r.change.to_string(),
                r.reference.clone(),
                r.by.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["TIME", "RELEASE", "HOW", "REFERENCE", "BY"],
        &rows,
    ));
    out
}

pub fn load_shedding(l: &LoadShedding) -> String {
    if l.enabled {
        format!(
            "Load shedding in {}: {}% ({}; set {} by {})\n",
            l.environment,
            l.percentage,
            or_dash(l.reason.as_deref()),
            time(l.updated_at),
            or_dash(l.updated_by.as_deref())
        )
    } else {
        format!(
            "Load shedding in {}: off{}\n",
            l.environment,
            l.updated_at
                .map(|at| format!(" (set {at} by {})", or_dash(l.updated_by.as_deref())))
                .unwrap_or_default()
        )
    }
}

/// Prints an error for people (stderr) or machines (the error body as JSON on stdout), and
/// returns the exit code it deserves.
pub fn report_error(error: &ClientError, json: bool) -> u8 {
    let code = match error.body() {
        Some(body) if body.error.code == "blocked_by_security_gate" => exit::NO,
        // Refused by policy after the gate: production needs staging first (and a soak).
        Some(body)
            if matches!(
                body.error.reason,
                Some(ReasonCode::StagingValidationRequired | ReasonCode::SoakRequired)
            ) =>
        {
            exit::NO
        }
        _ if matches!(error.status(), Some(401 | 403)) => exit::REFUSED,
        _ => exit::ERROR,
    };
    match (json, error.body()) {
        (true, Some(body)) => {
            println!("{}", serde_json::to_string_pretty(body).unwrap_or_default())
        }
        (_, Some(body)) => eprint!("{}", human_error(body)),
        (_, None) => eprintln!("error: {error}"),
    }
    code
}

fn human_error(body: &ErrorBody) -> String {
    let mut out = format!("error: {}", body.error.message);
    if let Some(reason) = body.error.reason {
        let _ = write!(out, " [{reason}]");
    }
    out.push('\n');
    for hint in &body.error.hints {
        let _ = writeln!(out, "  hint: {hint}");
    }
    if let Some(id) = &body.error.request_id {
        let _ = writeln!(out, "  request id: {id}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let text = table(
            &["A", "BB"],
            &[
                vec!["long".into(), "x".into()],
                vec!["s".into(), "yy".into()],
            ],
        );
        assert_eq!(text, "A     BB\nlong  x\ns     yy\n");
    }

    #[test]
    fn time_left_is_coarse() {
        let now = Timestamp::from_unix_millis(1_000_000);
        for (seconds, text) in [
            (-5, "none"),
            (0, "none"),
            (45, "45s"),
            (29 * 60 + 59, "29m"),
            (23 * 3_600 + 59 * 60, "23h59m"),
            (2 * 86_400 + 3 * 3_600 + 5, "2d3h"),
        ] {
            assert_eq!(time_left(now, now.plus_seconds(seconds)), text, "{seconds}");
        }
    }

    fn vote(name: &str, role: Role, kind: deploy_safety_core::VoteKind, at: Timestamp) -> Vote {
        Vote {
            principal: name.to_owned(),
            role,
            vote: kind,
            comment: Some(format!("{name} says so")),
            at,
            authenticated_by: "token".to_owned(),
        }
    }

    fn pending(now: Timestamp) -> OverrideRequestView {
        OverrideRequestView {
            id: "oreq_1".to_owned(),
            status: RequestStatus::Pending,
            action: deploy_safety_core::Action::CanaryStart,
            environment: deploy_safety_core::Environment::PRODUCTION,
            service: None,
            release_id: Some("v1.2.3".to_owned()),
            reason: "CHG-1234".to_owned(),
            ttl_minutes: 30,
            requested_by: "dev".to_owned(),
            requested_by_role: Role::Developer,
            required: 2,
            approver_roles: vec![Role::SecurityTeam, Role::EngLead],
            approvals: Vec::new(),
            denial: None,
            created_at: now,
            expires_at: now.plus_minutes(24 * 60),
            decided_at: None,
            override_id: None,
        }
    }

    #[test]
    fn a_vote_says_what_it_did() {
        use deploy_safety_core::VoteKind::{Approve, Deny};
        let now = Timestamp::from_unix_millis(1_767_225_600_000);
        let mut r = pending(now);
        r.approvals.push(vote("lead", Role::EngLead, Approve, now));
        let text = override_vote(&r, now);
        assert!(
            text.starts_with(
                "counted: 1 of 2 approvals, waiting for 1 more approval from security-team or eng-lead (not dev, lead)\n"
            ),
            "{text}"
        );
        assert!(text.contains("Approvals:     1/2"), "{text}");
        assert!(
            text.contains("approved by lead (eng-lead) at 2026-01-01T00:00:00.000Z: lead says so"),
            "{text}"
        );
        assert!(text.contains("(1d0h left to vote)"), "{text}");

        let later = now.plus_minutes(1);
        let mut approved = r.clone();
        approved
            .approvals
            .push(vote("sec", Role::SecurityTeam, Approve, later));
        approved.status = RequestStatus::Approved;
        approved.decided_at = Some(later);
        approved.override_id = Some("ovr_1".to_owned());
        let text = override_vote(&approved, later);
        assert!(
            text.starts_with(
                "approved: override ovr_1 created, expires 2026-01-01T00:31:00.000Z\n"
            ),
            "{text}"
        );
        assert!(text.contains("ovr_1, 30 minutes from"), "{text}");

        let mut denied = r;
        denied.denial = Some(vote("sec", Role::SecurityTeam, Deny, later));
        denied.status = RequestStatus::Denied;
        denied.decided_at = Some(later);
        let text = override_vote(&denied, later);
        assert!(
            text.starts_with("denied: oreq_1 by sec: no override will be made\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "Denied by:     sec (security-team) at 2026-01-01T00:01:00.000Z: sec says so"
            ),
            "{text}"
        );
    }

    #[test]
    fn requests_list_shows_votes_and_time() {
        let now = Timestamp::from_unix_millis(1_767_225_600_000);
        let mut r = pending(now);
        r.approvals.push(vote(
            "lead",
            Role::EngLead,
            deploy_safety_core::VoteKind::Approve,
            now,
        ));
        let list = OverrideRequestList {
            requests: vec![r],
            truncated: true,
        };
        let text = override_requests(&list, now.plus_minutes(60));
        assert!(text.contains("1/2 (lead)"), "{text}");
        assert!(text.contains("23h0m left"), "{text}");
        assert!(
            text.ends_with("(more requests exist; narrow with --status)\n"),
            "{text}"
        );
        let empty = OverrideRequestList {
            requests: Vec::new(),
            truncated: false,
        };
        assert_eq!(override_requests(&empty, now), "No override requests.\n");
    }
}
