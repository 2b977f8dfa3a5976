//! End to end: `deploy-safety migrate-data` copies every record of a used SQLite database into
//! a new one (PostgreSQL, or another SQLite file), the copy's audit chain verifies, and a server
//! on the copy carries on where the old one stopped.

#![allow(clippy::unwrap_used)]

mod common;

use common::flows::{
    HEALTHY, push_metrics, start_staging_canary, validate_in_staging, wait_healthy,
};
use common::{Installation, StaticHttp, TestDb, code, stderr, stdout};

const REFUSED: i32 = 4;
const CHAIN_BROKEN: i32 = 5;

/// Every table the product keeps, with its key.
const TABLES: &[(&str, &str)] = &[
    ("gate_state", "id"),
    ("principals", "name"),
    ("tokens", "id"),
    ("overrides", "id"),
    ("audit_log", "seq"),
    ("audit_head", "id"),
    ("audit_checkpoints", "id"),
    ("incidents", "id"),
    ("validations", "id"),
    ("validation_runs", "validation_id, number"),
    ("probes", "id"),
    ("probe_results", "id"),
    ("heartbeat", "id"),
    ("canaries", "id"),
    ("soaks", "id"),
    ("rollbacks", "id"),
    ("releases", "id"),
    ("load_shedding", "environment, service"),
    ("freezes", "id"),
    ("freeze_scopes", "action, environment, service, freeze_id"),
    ("events", "seq"),
    ("outbox", "id"),
];

fn settings(webhook: &StaticHttp) -> String {
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

fn ok(out: &std::process::Output) {
    assert_eq!(code(out), 0, "{}{}", stdout(out), stderr(out));
}

/// Uses every feature once, so every table holds records, and returns the admin and CI tokens.
fn use_everything(install: &Installation, webhook: &StaticHttp) -> (String, String) {
    let server = install.start_with_config(&settings(webhook));
    let admin = server.bootstrap_token.clone().unwrap();
    let ci = install.create_token("ci", "developer");
    let lead = install.create_token("lead", "eng-lead");
    wait_healthy(&server, &ci);

    ok(&server.cli(&admin, &["threat", "set", "low", "--reason", "INC-1 scan"]));
    ok(&server.cli(
        &lead,
        &[
            "override",
            "create",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
            "--reason",
            "CHG-7 hotfix",
            "--ttl-minutes",
            "30",
        ],
    ));
    ok(&server.cli(
        &ci,
        &[
            "gate",
            "check",
            "--action",
            "deploy.rollback",
            "--environment",
            "staging",
        ],
    ));
    ok(&server.cli(
        &ci,
        &[
            "incident",
            "open",
            "--title",
            "Payments slow",
            "--severity",
            "low",
            "--category",
            "operational",
            "--environment",
            "staging",
        ],
    ));
    validate_in_staging(&server, &ci, "v1.2.3");
    start_staging_canary(&server, &ci, "v1.2.3");
    push_metrics(&server, &ci, "staging", &HEALTHY);
    ok(&server.cli(
        &ci,
        &[
            "soak",
            "start",
            "--release",
            "v1.2.3",
            "--environment",
            "staging",
        ],
    ));
    let (status, rollback) = server.cli_json(
        &ci,
        &[
            "rollback",
            "create",
            "--environment",
            "staging",
            "--from",
            "v1.2.3",
            "--to",
            "v1.2.2",
            "--reason",
            "INC-2 errors",
        ],
    );
    assert_eq!(status, 0, "{rollback}");
    let id = rollback["id"].as_str().unwrap().to_owned();
    ok(&server.cli(&ci, &["rollback", "execute", &id]));
    // A probe nobody has checked yet degrades health: added after the gated work.
    ok(&server.cli(
        &admin,
        &[
            "probe",
            "add",
            "cache",
            "--kind",
            "tcp",
            "--address",
            &webhook.address,
        ],
    ));
    ok(&server.cli(
        &admin,
        &[
            "loadshed",
            "set",
            "staging",
            "--percentage",
            "20",
            "--reason",
            "INC-2 load",
        ],
    ));
    ok(&server.cli(
        &admin,
        &[
            "freeze",
            "create",
            "--name",
            "payments-stop",
            "--reason",
            "INC-3 review",
            "--environment",
            "staging",
            "--service",
            "payments/api",
            "--service",
            "search",
        ],
    ));
    // The webhook has had every event delivered (so the outbox holds finished entries, whose
    // done_at is the eighth column).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !install
        .db
        .dump("outbox", "id")
        .iter()
        .all(|row| row[7].is_some())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook deliveries did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.stop();
    (admin, ci)
}

/// Copies `source` into `target` and checks the report, the chain and every table.
fn migrate_and_compare(source: &Installation, target: &Installation) {
    let out = source.offline(&["audit", "verify", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let source_chain: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let out = source.offline_raw(&[
        "migrate-data",
        "--from",
        &source.database_url(),
        "--to",
        &target.database_url(),
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["auditChain"]["valid"], true, "{report}");
    assert_eq!(
        report["auditChain"]["entriesVerified"],
        source_chain["entriesVerified"]
    );
    assert_eq!(report["auditChain"]["headHash"], source_chain["headHash"]);

    let mut total = 0;
    for (table, key) in TABLES {
        let in_source = source.db.dump(table, key);
        let in_target = target.db.dump(table, key);
        assert_eq!(in_source, in_target, "table {table} differs after the copy");
        assert_eq!(
            report["rowsCopied"][table].as_u64(),
            Some(in_source.len() as u64),
            "{table}: {report}"
        );
        assert!(!in_source.is_empty(), "the test left table {table} empty");
        total += in_source.len() as u64;
    }
    assert_eq!(report["totalRows"].as_u64(), Some(total));
}

/// A server on the copy: the old tokens work, the state is there, and new records continue
/// every sequence (audit chain, events, releases, outbox).
fn carry_on(target: &Installation, webhook: &StaticHttp, admin: &str, ci: &str) {
    let server = target.start_with_config(&settings(webhook));
    assert!(server.bootstrap_token.is_none(), "the copy has tokens");
    let (status, status_view) = server.cli_json(ci, &["status"]);
    assert_eq!(status, 0, "{status_view}");
    assert_eq!(status_view["threatLevel"], "low");
    let (_, overrides) = server.cli_json(admin, &["override", "list"]);
    assert_eq!(
        overrides["overrides"].as_array().unwrap().len(),
        1,
        "{overrides}"
    );
    let (_, canary) = server.cli_json(ci, &["canary", "status", "staging"]);
    assert_eq!(canary["releaseId"], "v1.2.3", "{canary}");

    ok(&server.cli(
        admin,
        &["threat", "set", "none", "--reason", "INC-1 closed"],
    ));
    let (status, rollback) = server.cli_json(
        ci,
        &[
            "rollback",
            "create",
            "--environment",
            "staging",
            "--from",
            "v1.2.2",
            "--to",
            "v1.2.1",
            "--reason",
            "after the move",
        ],
    );
    assert_eq!(status, 0, "{rollback}");
    let id = rollback["id"].as_str().unwrap().to_owned();
    ok(&server.cli(ci, &["rollback", "execute", &id]));
    let (_, releases) = server.cli_json(ci, &["releases", "staging"]);
    assert_eq!(releases["releases"][0]["releaseId"], "v1.2.1", "{releases}");
    let (status, verify) = server.cli_json(admin, &["audit", "verify"]);
    assert_eq!(status, 0, "{verify}");
    assert_eq!(verify["valid"], true);
    server.stop();
}

#[test]
fn migrate_data_copies_sqlite_into_postgres() {
    let Some(postgres) = TestDb::postgres() else {
        return;
    };
    let webhook = StaticHttp::start(200);
    let source = Installation::on(TestDb::sqlite());
    let (admin, ci) = use_everything(&source, &webhook);
    let target = Installation::on(postgres);

    migrate_and_compare(&source, &target);
    carry_on(&target, &webhook, &admin, &ci);

    // A second copy into the now-used database is refused, and changes nothing.
    let before = target.db.dump("audit_log", "seq");
    let out = source.offline_raw(&[
        "migrate-data",
        "--from",
        &source.database_url(),
        "--to",
        &target.database_url(),
    ]);
    assert_eq!(code(&out), REFUSED, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("already holds records"),
        "{}",
        stderr(&out)
    );
    assert_eq!(target.db.dump("audit_log", "seq"), before);
}

#[test]
fn migrate_data_copies_sqlite_into_a_new_sqlite_file() {
    let webhook = StaticHttp::start(200);
    let source = Installation::on(TestDb::sqlite());
    let (admin, ci) = use_everything(&source, &webhook);
    let target = Installation::on(TestDb::sqlite());

    migrate_and_compare(&source, &target);
    carry_on(&target, &webhook, &admin, &ci);
}

#[test]
fn a_broken_audit_chain_is_not_copied() {
    let source = Installation::on(TestDb::sqlite());
    let server = source.start();
    let admin = server.bootstrap_token.clone().unwrap();
    ok(&server.cli(&admin, &["mode", "set", "lockdown", "--reason", "INC-9"]));
    server.stop();
    source
        .db
        .exec("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 1");
    let target = Installation::on(TestDb::sqlite());

    let out = source.offline_raw(&[
        "migrate-data",
        "--from",
        &source.database_url(),
        "--to",
        &target.database_url(),
    ]);
    assert_eq!(code(&out), CHAIN_BROKEN, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("nothing was copied"),
        "{}",
        stderr(&out)
    );
    assert!(
        target.db.sqlite_path().is_some_and(|p| !p.exists()),
        "the target was not even created"
    );
}
