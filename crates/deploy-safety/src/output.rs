//! What the CLI prints, and the exit codes machines read.

use std::fmt::Write as _;

use deploy_safety_api_types::{
    AuditPage, AuditVerification, ErrorBody, GateStatus, HealthReport, OverrideView,
};
use deploy_safety_client::ClientError;
use deploy_safety_core::{Decision, Timestamp};

/// Exit codes. 2 is clap's, for usage errors.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    /// The gate blocked the action (or a check says it would).
    pub const BLOCKED: u8 = 3;
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
    let _ = writeln!(out, "  Release:      {}", or_dash(r.release_id.as_deref()));
    let _ = writeln!(out, "  Reason:       {}", r.reason);
    let _ = writeln!(out, "  Approver:     {} ({})", r.approver, r.approver_role);
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
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.at.to_rfc3339(),
                e.principal.clone(),
                e.action.clone(),
                e.environment
                    .map_or_else(|| "-".to_owned(), |v| v.to_string()),
                e.decision.to_string(),
                e.reason.clone(),
            ]
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

pub fn verification(v: &AuditVerification) -> String {
    match &v.first_broken {
        None => format!(
            "Audit chain valid: {} entries, head hash {}\n",
            v.entries_verified, v.head_hash
        ),
        Some(broken) => format!(
            "Audit chain BROKEN at entry {}: {}\n  {} entries verified before it (head hash {})\n",
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
                    p.kind.clone(),
                    if p.critical { "yes" } else { "no" }.to_owned(),
                    if p.healthy { "healthy" } else { "failing" }.to_owned(),
                    p.message.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["PROBE", "KIND", "CRITICAL", "STATE", "MESSAGE"],
            &rows,
        ));
    }
    out
}

/// Prints an error for people (stderr) or machines (the error body as JSON on stdout), and
/// returns the exit code it deserves.
pub fn report_error(error: &ClientError, json: bool) -> u8 {
    let code = match error.body() {
        Some(body) if body.error.code == "blocked_by_security_gate" => exit::BLOCKED,
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
}
