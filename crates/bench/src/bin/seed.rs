//! Seeds a database for the scale runs of the load benchmark: a history as the product itself
//! writes it, through the use cases (so the audit chain is real and verifies).
//!
//! `ds-bench-seed --database-url URL --audit-entries 1000000 --overrides 10000`
//!
//! - `--overrides` overrides, all but `--active-overrides` created over the past 30 days and
//!   expired since (their expiry announced, as a running server would have);
//! - then gate checks until the audit log holds `--audit-entries` entries: staging rollbacks and
//!   canary starts (allowed), production canary starts without an override (denied), production
//!   rollbacks covered by an active override.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use deploy_safety_api_types::{AuditListQuery, CheckRequest, CreateOverrideRequest};
use deploy_safety_app::{App, AppSettings, AuthMethod, Caller, Clock, ManualClock};
use deploy_safety_core::{Action, Environment, Role, Timestamp};
use deploy_safety_store::Store;
use tokio::task::JoinSet;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    database_url: String,
    /// Audit entries the log holds when done.
    #[arg(long, default_value_t = 1_000_000)]
    audit_entries: u64,
    /// Overrides in all.
    #[arg(long, default_value_t = 10_000)]
    overrides: u64,
    /// Of which still active at the end.
    #[arg(long, default_value_t = 100)]
    active_overrides: u64,
}

/// Writes in flight at once: enough to fill the writer's batches.
const IN_FLIGHT: usize = 1_024;
const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

fn real_now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp::from_unix_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}

async fn caller(app: &App, name: &str, role: Role) -> anyhow::Result<Caller> {
    let issued = app.create_token(name, role, "ds-bench-seed").await?;
    Ok(Caller {
        name: issued.view.name,
        role,
        auth: AuthMethod::Token { id: issued.view.id },
    })
}

/// Waits for a free slot, failing on the first failed write.
async fn make_room(in_flight: &mut JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    while in_flight.len() >= IN_FLIGHT {
        if let Some(done) = in_flight.join_next().await {
            done??;
        }
    }
    Ok(())
}

async fn drain(in_flight: &mut JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    while let Some(done) = in_flight.join_next().await {
        done??;
    }
    Ok(())
}

fn override_request(
    action: Action,
    environment: Environment,
    release: String,
    ttl: i64,
) -> CreateOverrideRequest {
    CreateOverrideRequest {
        service: None,
        action,
        environment,
        reason: "CHG-1234 seeded for the benchmark".to_owned(),
        approver: None,
        ttl_minutes: Some(ttl),
        release_id: Some(release),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.active_overrides <= args.overrides,
        "--active-overrides cannot exceed --overrides"
    );
    let started = Instant::now();
    let url = args.database_url.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&url))
        .await?
        .context("cannot open the database")?;
    let now = real_now();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(
        now.unix_millis() - 30 * DAY,
    )));
    let app = App::new(store, clock.clone(), AppSettings::default());
    // The security team may approve any action in any environment.
    let lead = caller(&app, "bench-security", Role::SecurityTeam).await?;
    let ci = caller(&app, "bench-ci", Role::Developer).await?;

    // Overrides that expired over the past month.
    let expired = args.overrides - args.active_overrides;
    let step = (28 * DAY) / i64::try_from(expired.max(1))?;
    let actions = [
        Action::CanaryStart,
        Action::CanaryPromote,
        Action::Rollback,
        Action::LoadShed,
    ];
    let environments = [Environment::STAGING, Environment::PRODUCTION];
    let mut in_flight = JoinSet::new();
    for i in 0..expired {
        make_room(&mut in_flight).await?;
        clock.advance_millis(step);
        let index = usize::try_from(i)?;
        let request = override_request(
            actions[index % actions.len()],
            environments[(index / actions.len()) % environments.len()],
            format!("v0.{i}.0"),
            60,
        );
        let (app, lead) = (app.clone(), lead.clone());
        in_flight.spawn(async move {
            app.create_override(&lead, request).await?;
            Ok(())
        });
    }
    drain(&mut in_flight).await?;

    // Active ones: production rollbacks of releases v9.N.0, for the rest of the next hours.
    clock.set(Timestamp::from_unix_millis(now.unix_millis() - 60 * MINUTE));
    let announced = app.announce_expired_overrides(clock.now()).await?;
    for i in 0..args.active_overrides {
        let request = override_request(
            Action::Rollback,
            Environment::PRODUCTION,
            format!("v9.{i}.0"),
            240,
        );
        app.create_override(&lead, request).await?;
    }
    eprintln!(
        "{} overrides ({} expired and announced, {} active) in {:.1} s",
        args.overrides,
        announced,
        args.active_overrides,
        started.elapsed().as_secs_f64()
    );

    // Gate checks until the log is full, one millisecond apart, ending now.
    let head = app
        .audit_page(AuditListQuery {
            limit: Some(1),
            ..AuditListQuery::default()
        })
        .await?
        .entries
        .first()
        .and_then(|e| u64::try_from(e.seq()).ok())
        .unwrap_or(0);
    let checks = args.audit_entries.saturating_sub(head);
    clock.set(Timestamp::from_unix_millis(
        now.unix_millis() - i64::try_from(checks)? - 1_000,
    ));
    let active = args.active_overrides.max(1);
    for i in 0..checks {
        make_room(&mut in_flight).await?;
        clock.advance_millis(1);
        let (action, environment, release_id) = match i % 10 {
            0..=5 => (Action::Rollback, Environment::STAGING, None),
            6 => (
                Action::CanaryStart,
                Environment::STAGING,
                Some("v1.2.3".to_owned()),
            ),
            7 | 8 => (
                Action::CanaryStart,
                Environment::PRODUCTION,
                Some("v1.2.3".to_owned()),
            ),
            _ => (
                Action::Rollback,
                Environment::PRODUCTION,
                Some(format!("v9.{}.0", (i / 10) % active)),
            ),
        };
        let (app, ci) = (app.clone(), ci.clone());
        in_flight.spawn(async move {
            app.check(
                &ci,
                CheckRequest {
                    service: None,
                    action,
                    environment,
                    release_id,
                },
            )
            .await?;
            Ok(())
        });
        if (i + 1) % 100_000 == 0 {
            eprintln!(
                "{} checks in {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    drain(&mut in_flight).await?;

    let verified = app.verify_audit().await?;
    anyhow::ensure!(
        verified.valid,
        "the seeded audit chain does not verify: {verified:?}"
    );
    eprintln!(
        "seeded: {} audit entries (chain verified), {} overrides, in {:.1} s",
        verified.entries_verified,
        args.overrides,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
