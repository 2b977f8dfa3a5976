//! End to end: two real server processes on one PostgreSQL database.
//!
//! - Failover: a canary progresses under the leader; the leader is killed with SIGKILL; the other
//!   replica takes over and finishes the canary within the bound, every step recorded once, every
//!   webhook delivered, and the audit chain verifies.
//! - Concurrency: decisions on one replica see changes made on the other (mode, overrides,
//!   freezes) and on the database (a token revoked by the CLI) at once; concurrent canary
//!   starts yield one canary; hundreds of parallel gated requests across both replicas leave one
//!   unbroken chain holding every acknowledged decision.
//!
//! Skipped (saying so) without `DEPLOY_SAFETY_TEST_POSTGRES_URL`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::flows::{HEALTHY, Monitoring, canary_status, validate_in_staging, wait_healthy};
use common::{Installation, RunningServer, StaticHttp, TestDb, code, stderr, stdout};
use deploy_safety_api_types::{
    AuditListQuery, CheckRequest, CreateFreezeRequest, CreateOverrideRequest,
    CreateRollbackRequest, EndFreezeRequest, SetModeRequest, StartCanaryRequest,
};
use deploy_safety_client::Client;
use deploy_safety_core::{Action, Environment, SecurityMode};
use serde_json::Value;

/// How long the survivor may take to step a canary after the leader dies: the takeover
/// (README: about 1–2 s after a process dies) plus one step interval, with room for a loaded CI
/// machine. The issue asks for under 10 s.
const TAKEOVER_BOUND: Duration = Duration::from_secs(10);

fn webhook_settings(webhook: &StaticHttp) -> String {
    format!(
        r#"
[[webhooks]]
name = "deployer"
url = "http://{}/hooks"
secret = "at-least-16-characters-of-secret"
"#,
        webhook.address
    )
}

/// This replica's view of itself and of the leader, from `GET /health`.
fn replica_health(server: &RunningServer, token: &str) -> Value {
    let (_, health) = server.cli_json(token, &["health"]);
    health["replica"].clone()
}

fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn timestamp_millis(at: &Value) -> i64 {
    deploy_safety_core::Timestamp::parse_rfc3339(at.as_str().unwrap())
        .unwrap()
        .unix_millis()
}

fn now_millis() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn the_other_replica_finishes_a_canary_when_the_leader_is_killed() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let install = Installation::on(db);
    let webhook = StaticHttp::start(200);
    let leader = install.start_replica("a", &webhook_settings(&webhook));
    let admin = leader.bootstrap_token.clone().unwrap();
    let ci = install.create_token("ci", "developer");
    wait_until("replica a to lead", Duration::from_secs(20), || {
        replica_health(&leader, &ci)["leading"] == true
    });
    let survivor = install.start_replica("b", &webhook_settings(&webhook));
    assert!(survivor.bootstrap_token.is_none());
    let seen_by_b = replica_health(&survivor, &ci);
    assert_eq!(seen_by_b["leading"], false, "{seen_by_b}");
    assert_eq!(seen_by_b["leader"]["replica"], "a", "{seen_by_b}");
    assert_eq!(seen_by_b["database"], "postgres", "{seen_by_b}");

    wait_healthy(&leader, &ci);
    validate_in_staging(&leader, &ci, "v1.2.3");
    let (status, started) = leader.cli_json(
        &ci,
        &[
            "canary",
            "start",
            "--release",
            "v1.2.3",
            "--environment",
            "staging",
            "--deployment",
            "stg-deploy-001",
            "--increment-interval",
            "1000",
            "--increment-percentage",
            "10",
        ],
    );
    assert_eq!(status, 0, "{started}");

    // A monitoring system keeps the canary's metrics fresh, through the replica that survives.
    let mut args = vec!["canary", "metrics", "staging"];
    args.extend(HEALTHY);
    // Once the canary is complete there is nothing to push metrics to.
    let pusher = Monitoring::start(&survivor, &ci, &args, "no active canary");

    wait_until(
        "two steps under the leader",
        Duration::from_secs(20),
        || {
            canary_status(&survivor, &ci, "staging")["currentPercentage"]
                .as_u64()
                .is_some_and(|p| p >= 30)
        },
    );
    leader.signal("KILL");
    let killed_at = now_millis();
    drop(leader);

    wait_until(
        "the survivor to finish the canary",
        Duration::from_secs(40),
        || canary_status(&survivor, &ci, "staging")["phase"] == "completed",
    );
    drop(pusher);

    let view = canary_status(&survivor, &ci, "staging");
    assert_eq!(view["currentPercentage"], 100, "{view}");
    let steps = view["steps"].as_array().unwrap();
    // Every step once, in order, each taking the canary from where the last one left it.
    let mut percentage = 0;
    for (index, step) in steps.iter().enumerate() {
        assert_eq!(step["number"], index, "{view}");
        assert_eq!(step["fromPercentage"], percentage, "{view}");
        assert!(
            step["toPercentage"].as_u64().unwrap() > percentage,
            "{view}"
        );
        percentage = step["toPercentage"].as_u64().unwrap();
    }
    assert_eq!(percentage, 100);
    let after_kill = steps
        .iter()
        .find(|s| timestamp_millis(&s["at"]) > killed_at)
        .unwrap_or_else(|| panic!("no step after the leader died: {view}"));
    let takeover = Duration::from_millis(
        u64::try_from(timestamp_millis(&after_kill["at"]) - killed_at).unwrap(),
    );
    eprintln!("the survivor stepped the canary {takeover:?} after the leader was killed");
    assert!(
        takeover <= TAKEOVER_BOUND,
        "the survivor took {takeover:?} to step the canary (bound {TAKEOVER_BOUND:?})"
    );

    // The audit log holds each step once.
    let (_, audit) = survivor.cli_json(
        &ci,
        &[
            "audit",
            "list",
            "--action",
            "deploy.canary.step",
            "--limit",
            "100",
        ],
    );
    let recorded: Vec<u64> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["toPercentage"].as_u64().unwrap())
        .collect();
    let distinct: BTreeSet<u64> = recorded.iter().copied().collect();
    // The start (step 0) is recorded as the gated start; each later step as a step.
    assert_eq!(recorded.len(), steps.len() - 1, "{audit}");
    assert_eq!(
        distinct.len(),
        recorded.len(),
        "a step was recorded twice: {audit}"
    );

    let health = replica_health(&survivor, &ci);
    assert_eq!(health["leading"], true, "{health}");
    assert_eq!(health["leader"]["replica"], "b", "{health}");

    // Every webhook delivered: none lost. A delivery in flight when the leader died may be sent
    // again (at-least-once, with the same X-Deploy-Safety-Delivery id for the receiver to drop),
    // but no more than once again.
    wait_until("every webhook delivered", Duration::from_secs(30), || {
        install
            .db
            .dump("outbox", "id")
            .iter()
            .all(|row| row[7].is_some())
    });
    let outbox: BTreeSet<String> = install
        .db
        .dump("outbox", "id")
        .iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    assert!(
        !outbox.is_empty(),
        "the canary's events were queued for the webhook"
    );
    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    for id in webhook.header_values("x-deploy-safety-delivery") {
        *deliveries.entry(id).or_default() += 1;
    }
    let delivered: BTreeSet<String> = deliveries.keys().cloned().collect();
    assert_eq!(delivered, outbox, "every outbox entry reached the receiver");
    assert!(
        deliveries.values().all(|&n| n <= 2),
        "a webhook was delivered more than twice: {deliveries:?}"
    );

    let out = survivor.cli(&admin, &["audit", "verify"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    survivor.stop();
}

/// A decision as acknowledged to its caller.
#[derive(Debug)]
struct Acknowledged {
    seq: u64,
    principal: &'static str,
    action: Action,
    environment: Environment,
    allowed: bool,
}

#[test]
fn two_replicas_decide_as_one() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let install = Installation::on(db);
    let a = install.start_replica("a", "");
    let admin = a.bootstrap_token.clone().unwrap();
    let ci = install.create_token("ci", "developer");
    let lead = install.create_token("lead", "eng-lead");
    let b = install.start_replica("b", "");
    wait_healthy(&a, &ci);
    validate_in_staging(&a, &ci, "v1.2.3");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(decide_on_both(&install, &a, &b, &admin, &ci, &lead));
    a.stop();
    b.stop();
}

async fn decide_on_both(
    install: &Installation,
    a: &RunningServer,
    b: &RunningServer,
    admin: &str,
    ci: &str,
    lead: &str,
) {
    let client = |server: &RunningServer, token: &str| {
        Client::new(&server.url, Some(token.to_owned())).unwrap()
    };
    let (a_admin, b_admin) = (client(a, admin), client(b, admin));
    let (a_ci, b_ci) = (client(a, ci), client(b, ci));
    let (a_lead, b_lead) = (client(a, lead), client(b, lead));
    let check = |action: Action, environment: Environment| CheckRequest {
        service: None,
        action,
        environment,
        release_id: None,
    };

    // A mode change on one replica is honored by the next decision on the other.
    a_admin
        .set_mode(&SetModeRequest {
            mode: SecurityMode::Lockdown,
            reason: Some("INC-42 credential leak".to_owned()),
        })
        .await
        .unwrap();
    let decided = b_ci
        .check(&check(Action::Rollback, Environment::STAGING))
        .await
        .unwrap();
    assert!(!decided.decision.allowed, "{decided:?}");
    b_admin
        .set_mode(&SetModeRequest {
            mode: SecurityMode::Enforce,
            reason: None,
        })
        .await
        .unwrap();
    let decided = a_ci
        .check(&check(Action::Rollback, Environment::STAGING))
        .await
        .unwrap();
    assert!(decided.decision.allowed, "{decided:?}");

    // An override created on one replica counts on the other; revoked there, it stops counting
    // on the first.
    let created = a_lead
        .create_override(&CreateOverrideRequest {
            service: None,
            action: Action::Rollback,
            environment: Environment::PRODUCTION,
            reason: "CHG-9 emergency rollback".to_owned(),
            approver: None,
            ttl_minutes: Some(30),
            release_id: None,
        })
        .await
        .unwrap();
    let decided = b_ci
        .check(&check(Action::Rollback, Environment::PRODUCTION))
        .await
        .unwrap();
    assert!(decided.decision.allowed, "{decided:?}");
    b_lead.revoke_override(&created.record.id).await.unwrap();
    let decided = a_ci
        .check(&check(Action::Rollback, Environment::PRODUCTION))
        .await
        .unwrap();
    assert!(!decided.decision.allowed, "{decided:?}");

    // A freeze created on one replica stops the other's next decision; ended there, the first
    // allows again.
    let canary_start = CheckRequest {
        release_id: Some("v1.2.3".to_owned()),
        ..check(Action::CanaryStart, Environment::STAGING)
    };
    let decided = b_ci.check(&canary_start).await.unwrap();
    assert!(decided.decision.allowed, "{decided:?}");
    let freeze = a_admin
        .create_freeze(&CreateFreezeRequest {
            name: "quarter-close".to_owned(),
            reason: "CHG-12 quarter close".to_owned(),
            environments: Some(vec![Environment::STAGING]),
            services: None,
            actions: None,
            start: None,
            end: None,
            schedule: None,
            hard: Some(true),
        })
        .await
        .unwrap();
    let decided = b_ci.check(&canary_start).await.unwrap();
    assert!(!decided.decision.allowed, "{decided:?}");
    b_admin
        .end_freeze(&freeze.freeze.id, &EndFreezeRequest { reason: None })
        .await
        .unwrap();
    let decided = a_ci.check(&canary_start).await.unwrap();
    assert!(decided.decision.allowed, "{decided:?}");

    // A token revoked on the database while both replicas use it is refused at once by both,
    // by the gate as everywhere: neither keeps what it read of a token past a change.
    let short = install.create_token("short-lived", "developer");
    let (a_short, b_short) = (client(a, &short), client(b, &short));
    for short in [&a_short, &b_short, &a_short, &b_short] {
        let decided = short
            .check(&check(Action::Rollback, Environment::STAGING))
            .await
            .unwrap();
        assert!(decided.decision.allowed, "{decided:?}");
    }
    let out = install.offline(&["token", "revoke", "short-lived"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for short in [&b_short, &a_short] {
        let refused = short
            .check(&check(Action::Rollback, Environment::STAGING))
            .await
            .unwrap_err();
        assert_eq!(refused.status(), Some(401), "{refused}");
    }

    // Four concurrent canary starts for one environment, two on each replica: one canary.
    let start = StartCanaryRequest {
        service: None,
        release_id: "v1.2.3".to_owned(),
        environment: Environment::STAGING,
        deployment_id: "stg-deploy-001".to_owned(),
        config: None,
    };
    let starts = [&a_ci, &b_ci, &a_ci, &b_ci].map(|c| {
        let (c, start) = (c.clone(), start.clone());
        tokio::spawn(async move { c.start_canary(&start).await })
    });
    let mut started = 0;
    for outcome in starts {
        match outcome.await.unwrap() {
            Ok(_) => started += 1,
            Err(error) => assert_eq!(error.status(), Some(409), "{error}"),
        }
    }
    assert_eq!(started, 1, "exactly one of the concurrent starts wins");
    let canaries = a_ci.list_canaries(&Default::default()).await.unwrap();
    assert_eq!(canaries.canaries.len(), 1, "{canaries:?}");

    // A rollback executed from both replicas at once (twice each) is executed once.
    let rollback = a_ci
        .create_rollback(&CreateRollbackRequest {
            service: None,
            environment: Environment::STAGING,
            from_version: "v1.2.3".to_owned(),
            to_version: "v1.2.2".to_owned(),
            reason: "INC-7 error spike".to_owned(),
        })
        .await
        .unwrap();
    let executions = [&a_ci, &b_ci, &a_ci, &b_ci].map(|c| {
        let (c, id) = (c.clone(), rollback.id.clone());
        tokio::spawn(async move { c.execute_rollback(&id).await })
    });
    let mut executed = 0;
    for outcome in executions {
        match outcome.await.unwrap() {
            Ok(_) => executed += 1,
            Err(error) => assert_eq!(error.status(), Some(409), "{error}"),
        }
    }
    assert_eq!(executed, 1, "exactly one of the concurrent executions wins");
    let history = b_ci.releases(Environment::STAGING, None).await.unwrap();
    let recorded = history
        .releases
        .iter()
        .filter(|r| r.reference == rollback.id)
        .count();
    assert_eq!(recorded, 1, "{history:?}");

    // Hundreds of gated requests at once, across both replicas and principals.
    let requests: Vec<(Client, &'static str, Action, Environment)> = (0..400)
        .map(|i| {
            let (client, principal) = match i % 4 {
                0 => (a_ci.clone(), "ci"),
                1 => (b_ci.clone(), "ci"),
                2 => (a_lead.clone(), "lead"),
                _ => (b_lead.clone(), "lead"),
            };
            let (action, environment) = match i % 3 {
                0 => (Action::Rollback, Environment::STAGING),
                1 => (Action::Rollback, Environment::PRODUCTION),
                _ => (Action::CanaryPromote, Environment::STAGING),
            };
            (client, principal, action, environment)
        })
        .collect();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(client, principal, action, environment)| {
            let limit = Arc::clone(&limit);
            tokio::spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                let answer = client
                    .check(&CheckRequest {
                        service: None,
                        action,
                        environment,
                        release_id: None,
                    })
                    .await
                    .unwrap();
                Acknowledged {
                    seq: answer.audit_seq,
                    principal,
                    action,
                    environment,
                    allowed: answer.decision.allowed,
                }
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.push(task.await.unwrap());
    }

    // One chain, the same seen from both replicas, holding every acknowledged decision. (The
    // leader may append meanwhile, e.g. a probe's status change: compare what was read.)
    let mut entries = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = b_admin
            .audit_page(&AuditListQuery {
                limit: Some(500),
                cursor,
                ..AuditListQuery::default()
            })
            .await
            .unwrap();
        for entry in &page.entries {
            let seq = entry.entry().expect("no corrupt entries").seq;
            entries.insert(seq, serde_json::to_value(entry).unwrap());
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let read = entries.len() as u64;
    assert_eq!(
        entries.keys().copied().collect::<Vec<_>>(),
        (1..=read).collect::<Vec<_>>(),
        "the chain has no gaps"
    );
    let verified_a = a_admin.audit_verify().await.unwrap();
    let verified_b = b_admin.audit_verify().await.unwrap();
    assert!(verified_a.valid, "{verified_a:?}");
    assert!(verified_b.valid, "{verified_b:?}");
    assert!(verified_a.entries_verified >= read && verified_b.entries_verified >= read);
    if verified_a.entries_verified == verified_b.entries_verified {
        assert_eq!(verified_a.head_hash, verified_b.head_hash);
    }
    let seqs: BTreeSet<u64> = acknowledged.iter().map(|d| d.seq).collect();
    assert_eq!(
        seqs.len(),
        acknowledged.len(),
        "every decision has its own entry"
    );
    for decision in &acknowledged {
        let entry = &entries[&decision.seq];
        assert_eq!(entry["principal"], decision.principal, "{entry}");
        assert_eq!(entry["action"], "security-gate.check", "{entry}");
        assert_eq!(
            entry["details"]["action"],
            decision.action.as_str(),
            "{entry}"
        );
        assert_eq!(
            entry["environment"],
            decision.environment.as_str(),
            "{entry}"
        );
        assert_eq!(entry["decision"] == "denied", !decision.allowed, "{entry}");
    }
}

/// SPEC §20: on PostgreSQL only the leader makes checkpoints, one per interval, with the one
/// key every replica shares; a change of leader continues them.
#[test]
fn only_the_leader_makes_checkpoints() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let install = Installation::on(db);
    let settings = |name: &str| {
        format!(
            "[audit]\ncheckpoint_interval_seconds = 1\ncheckpoint_file = \"{}\"\n",
            install.db.dir().join(format!("{name}.jsonl")).display()
        )
    };
    let kept = |name: &str| {
        std::fs::read_to_string(install.db.dir().join(format!("{name}.jsonl")))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let a = install.start_replica("a", &settings("a"));
    let admin = a.bootstrap_token.clone().unwrap();
    wait_until("replica a to lead", Duration::from_secs(20), || {
        replica_health(&a, &admin)["leading"] == true
    });
    let b = install.start_replica("b", &settings("b"));
    wait_until("five checkpoints", Duration::from_secs(30), || {
        install.db.dump("audit_checkpoints", "id").len() >= 5
    });
    assert_eq!(kept("b"), 0, "the standby makes no checkpoints");
    assert!(kept("a") >= 4);
    let times: Vec<i64> = install
        .db
        .dump("audit_checkpoints", "id")
        .iter()
        .map(|row| row[3].as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] >= 1_000),
        "one checkpoint per interval: {times:?}"
    );
    let (_, key_a) = a.cli_json(&admin, &["audit", "public-key"]);
    let (_, key_b) = b.cli_json(&admin, &["audit", "public-key"]);
    assert_eq!(key_a, key_b, "the replicas share the key file");

    // The leader goes; the other one continues the checkpoints with the same key.
    a.signal("KILL");
    drop(a);
    let before = install.db.dump("audit_checkpoints", "id").len();
    wait_until(
        "checkpoints from replica b",
        Duration::from_secs(30),
        || kept("b") >= 2,
    );
    let rows = install.db.dump("audit_checkpoints", "id");
    assert!(rows.len() > before);
    let key_ids: BTreeSet<&str> = rows.iter().map(|row| row[4].as_deref().unwrap()).collect();
    assert_eq!(key_ids.len(), 1, "{key_ids:?}");
    let (status, verify) = b.cli_json(&admin, &["audit", "verify"]);
    assert_eq!(status, 0, "{verify}");
}

/// Advisory locks are per database: two installations in different schemas of one database
/// (and these tests, side by side) each have a leader of their own.
#[test]
fn installations_in_two_schemas_each_have_a_leader() {
    let (Some(first), Some(second)) = (TestDb::postgres(), TestDb::postgres()) else {
        return;
    };
    let (first, second) = (Installation::on(first), Installation::on(second));
    let a = first.start_replica("a", "");
    let b = second.start_replica("b", "");
    let (token_a, token_b) = (
        a.bootstrap_token.clone().unwrap(),
        b.bootstrap_token.clone().unwrap(),
    );
    wait_until("both to lead", Duration::from_secs(20), || {
        replica_health(&a, &token_a)["leading"] == true
            && replica_health(&b, &token_b)["leading"] == true
    });
}
