//! End to end: an audit log you can prove (SPEC §20), through the real binary on SQLite and, with
//! `DEPLOY_SAFETY_TEST_BACKEND=postgres`, on PostgreSQL.
//!
//! - Every kind of single edit of the stored log is named by `GET /audit/verify` and by the
//!   offline `audit verify --database-url` (exit 5), and listing, filters and paging still
//!   answer.
//! - Signed checkpoints: a file kept elsewhere proves the log's length and hashes; a truncated
//!   or re-hashed log is caught, a stale file fails `--max-age`, a stock Ed25519 tool
//!   (OpenSSL) checks a signature, the key survives a restart, and a key file others could
//!   read stops the server.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BINARY, Installation, RunningServer, TestDb, code, stderr, stdout};
use deploy_safety_app::{App, AppSettings, CheckpointSettings, ManualClock};
use deploy_safety_core::{
    AuditEntry, CheckpointKey, Role, SignedCheckpoint, StoredValue, Timestamp,
};
use deploy_safety_store::Store;
use serde_json::Value;

const CANARY: &str = "deploy.canary.start";

/// A server with seven entries: 1 the bootstrap token, 2 an allowed check in staging, 3 a
/// denied one in production, 4 an override, 5 a check it allowed, 6 an incident, 7 a check.
fn populated(install: &Installation) -> (RunningServer, String) {
    let server = install.start();
    let admin = server.bootstrap_token.clone().unwrap();
    for args in [
        vec![
            "gate",
            "check",
            "--action",
            CANARY,
            "--environment",
            "staging",
        ],
        vec![
            "gate",
            "check",
            "--action",
            CANARY,
            "--environment",
            "production",
        ],
        vec![
            "override",
            "create",
            "--action",
            CANARY,
            "--environment",
            "production",
            "--reason",
            "CHG-1",
            "--ttl-minutes",
            "60",
        ],
        vec![
            "gate",
            "check",
            "--action",
            CANARY,
            "--environment",
            "production",
        ],
        vec![
            "incident",
            "open",
            "--title",
            "checkout errors",
            "--severity",
            "low",
            "--category",
            "operational",
        ],
        vec![
            "gate",
            "check",
            "--action",
            CANARY,
            "--environment",
            "staging",
        ],
    ] {
        let out = server.cli(&admin, &args);
        assert!(matches!(code(&out), 0 | 3), "{args:?}: {}", stderr(&out));
    }
    let (_, verify) = server.cli_json(&admin, &["audit", "verify"]);
    assert_eq!(verify["entriesVerified"], 7, "{verify}");
    (server, admin)
}

/// Every seq `audit list` shows, newest first, paging by `limit`.
fn listed_seqs(server: &RunningServer, token: &str, filters: &[&str], limit: u32) -> Vec<i64> {
    let mut seqs = Vec::new();
    let mut cursor: Option<u64> = None;
    for _ in 0..100 {
        let limit = limit.to_string();
        let mut args = vec!["audit", "list", "--limit", limit.as_str()];
        args.extend(filters);
        let cursor_text = cursor.map(|c| c.to_string());
        if let Some(c) = &cursor_text {
            args.extend(["--cursor", c.as_str()]);
        }
        let (status, page) = server.cli_json(token, &args);
        assert_eq!(status, 0, "{args:?}: {page}");
        seqs.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_i64().unwrap()),
        );
        match page["nextCursor"].as_u64() {
            Some(next) => cursor = Some(next),
            None => return seqs,
        }
    }
    panic!("paging did not end");
}

/// One edit of the stored log, and what verification must name.
struct Edit {
    what: &'static str,
    apply: fn(&TestDb),
    /// The seq `firstBroken` names.
    broken: u64,
    /// The entries `audit list` still shows afterwards.
    listed: &'static [i64],
    /// The entry that no longer parses (listed as `corrupt: true`), if one does.
    corrupt: Option<i64>,
    /// Edits the database itself forbids on PostgreSQL (bytes that are not UTF-8).
    sqlite_only: bool,
}

const ALL: &[i64] = &[7, 6, 5, 4, 3, 2, 1];

const EDITS: &[Edit] = &[
    Edit {
        what: "a changed field",
        apply: |db| db.exec("UPDATE audit_log SET principal = 'mallory' WHERE seq = 3;"),
        broken: 3,
        listed: ALL,
        corrupt: None,
        sqlite_only: false,
    },
    Edit {
        what: "a character appended to details (no longer JSON)",
        apply: |db| db.exec("UPDATE audit_log SET details = details || 'x' WHERE seq = 3;"),
        broken: 3,
        listed: ALL,
        corrupt: Some(3),
        sqlite_only: false,
    },
    Edit {
        what: "a role that is no role",
        apply: |db| db.exec("UPDATE audit_log SET role = 'root' WHERE seq = 3;"),
        broken: 3,
        listed: ALL,
        corrupt: Some(3),
        sqlite_only: false,
    },
    Edit {
        what: "a non-number in the time column",
        apply: |db| db.store_text_in_audit_time(3, "yesterday"),
        broken: 3,
        listed: ALL,
        corrupt: Some(3),
        sqlite_only: false,
    },
    Edit {
        what: "text that is not UTF-8",
        apply: |db| {
            db.exec(
                "UPDATE audit_log SET principal = CAST(x'ff6d616c6c6f7279' AS TEXT) WHERE seq = 3;",
            );
        },
        broken: 3,
        listed: ALL,
        corrupt: Some(3),
        sqlite_only: true,
    },
    Edit {
        what: "a deleted entry",
        apply: |db| db.exec("DELETE FROM audit_log WHERE seq = 3;"),
        broken: 4,
        listed: &[7, 6, 5, 4, 2, 1],
        corrupt: None,
        sqlite_only: false,
    },
    Edit {
        what: "the last entry deleted",
        apply: |db| db.exec("DELETE FROM audit_log WHERE seq = 7;"),
        broken: 7,
        listed: &[6, 5, 4, 3, 2, 1],
        corrupt: None,
        sqlite_only: false,
    },
    Edit {
        what: "two entries swapped",
        apply: |db| {
            db.exec(
                "UPDATE audit_log SET seq = -3 WHERE seq = 3; \
                 UPDATE audit_log SET seq = 3 WHERE seq = 4; \
                 UPDATE audit_log SET seq = 4 WHERE seq = -3;",
            );
        },
        broken: 3,
        listed: ALL,
        corrupt: None,
        sqlite_only: false,
    },
    Edit {
        what: "an entry moved to another seq",
        apply: |db| db.exec("UPDATE audit_log SET seq = 1000 WHERE seq = 3;"),
        broken: 4,
        listed: &[1000, 7, 6, 5, 4, 2, 1],
        corrupt: None,
        sqlite_only: false,
    },
    Edit {
        what: "a changed hash",
        apply: |db| {
            db.exec(&format!(
                "UPDATE audit_log SET hash = '{}' WHERE seq = 3;",
                "ab".repeat(32)
            ))
        },
        broken: 3,
        listed: ALL,
        corrupt: None,
        sqlite_only: false,
    },
    Edit {
        what: "a changed prevHash",
        apply: |db| {
            db.exec(&format!(
                "UPDATE audit_log SET prev_hash = '{}' WHERE seq = 3;",
                "ab".repeat(32)
            ))
        },
        broken: 3,
        listed: ALL,
        corrupt: None,
        sqlite_only: false,
    },
    Edit {
        what: "an entry's seq set below 1",
        apply: |db| db.exec("UPDATE audit_log SET seq = -3 WHERE seq = 3;"),
        broken: 4,
        listed: &[7, 6, 5, 4, 2, 1, -3],
        corrupt: Some(-3),
        sqlite_only: false,
    },
    Edit {
        what: "the newest stored checkpoint altered so it no longer reads",
        apply: |db| db.exec("UPDATE audit_checkpoints SET seq = -1;"),
        broken: 7,
        listed: ALL,
        corrupt: None,
        sqlite_only: false,
    },
];

#[test]
fn every_single_edit_is_named_by_the_api_and_offline_and_listing_still_answers() {
    for edit in EDITS {
        let install = Installation::new();
        if edit.sqlite_only && install.db.is_postgres() {
            eprintln!(
                "SKIPPED on PostgreSQL (its text is always UTF-8): {}",
                edit.what
            );
            continue;
        }
        let (server, admin) = populated(&install);
        (edit.apply)(&install.db);
        let what = edit.what;

        // The API.
        let (status, verify) = server.cli_json(&admin, &["audit", "verify"]);
        assert_eq!(status, 5, "{what}: {verify}");
        assert_eq!(verify["valid"], false, "{what}");
        assert_eq!(
            verify["firstBroken"]["seq"], edit.broken,
            "{what}: {verify}"
        );
        assert!(
            verify["firstBroken"]["problem"]
                .as_str()
                .is_some_and(|p| !p.is_empty())
        );

        // Offline, on the database itself.
        let out = install.offline(&["audit", "verify", "--json"]);
        assert_eq!(code(&out), 5, "{what}: {}", stderr(&out));
        let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(offline["firstBroken"], verify["firstBroken"], "{what}");
        let out = install.offline(&["audit", "verify"]);
        assert_eq!(code(&out), 5);
        assert!(
            stdout(&out).contains(&format!("BROKEN at entry {}", edit.broken)),
            "{what}: {}",
            stdout(&out)
        );

        // Listing: every entry, the altered one marked when it no longer parses.
        let (status, page) = server.cli_json(&admin, &["audit", "list", "--limit", "1000"]);
        assert_eq!(status, 0, "{what}: {page}");
        let entries = page["entries"].as_array().unwrap();
        let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, edit.listed, "{what}");
        let corrupt: Vec<i64> = entries
            .iter()
            .filter(|e| e["corrupt"] == true)
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(corrupt, Vec::from_iter(edit.corrupt), "{what}");
        if edit.corrupt.is_some() {
            let entry = entries.iter().find(|e| e["corrupt"] == true).unwrap();
            assert!(entry["problem"].as_str().is_some_and(|p| !p.is_empty()));
            assert!(entry["raw"]["hash"].is_string(), "{what}: {entry}");
            let out = server.cli(&admin, &["audit", "list"]);
            assert_eq!(code(&out), 0);
            assert!(stdout(&out).contains("CORRUPT"), "{what}: {}", stdout(&out));
        }
        // Paging and filters work around it.
        assert_eq!(
            listed_seqs(&server, &admin, &[], 2),
            edit.listed,
            "{what}: paging"
        );
        let checks = listed_seqs(&server, &admin, &["--action", "security-gate.check"], 2);
        assert!(
            checks.contains(&7) || !edit.listed.contains(&7),
            "{what}: {checks:?}"
        );
        let (status, _) = server.cli_json(&admin, &["audit", "list", "--decision", "denied"]);
        assert_eq!(status, 0, "{what}");
    }
}

/// Waits for `done` to hold, with a deadline.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kept_lines(path: &Path) -> Vec<SignedCheckpoint> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn checkpoint_settings(file: &Path) -> String {
    format!(
        "[audit]\ncheckpoint_interval_seconds = 1\ncheckpoint_file = \"{}\"\n",
        file.display()
    )
}

/// `audit verify --database-url ... --checkpoints FILE --public-key PEM [extra]`.
fn prove(install: &Installation, file: &Path, key: &Path, extra: &[&str]) -> (i32, Value) {
    let (file, key) = (file.display().to_string(), key.display().to_string());
    let mut args = vec![
        "audit",
        "verify",
        "--json",
        "--checkpoints",
        file.as_str(),
        "--public-key",
        key.as_str(),
    ];
    args.extend(extra);
    let out = install.offline(&args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", stdout(&out), stderr(&out)));
    (code(&out), report)
}

#[test]
fn checkpoints_kept_elsewhere_prove_the_log_and_survive_a_restart() {
    let install = Installation::new();
    let kept = install.db.dir().join("elsewhere");
    std::fs::create_dir(&kept).unwrap();
    let file = kept.join("checkpoints.jsonl");
    let server = install.start_with_config(&checkpoint_settings(&file));
    let admin = server.bootstrap_token.clone().unwrap();
    server.cli(
        &admin,
        &[
            "gate",
            "check",
            "--action",
            CANARY,
            "--environment",
            "staging",
        ],
    );

    // The key file was created beside the database, for its owner only.
    let key_file = install.db.dir().join("deploy-safety-audit-key.pem");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The public key, from the server and from the key file alike.
    let out = server.cli(&admin, &["audit", "public-key"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let public_pem = stdout(&out);
    assert!(
        public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{public_pem}"
    );
    let from_file = install.offline_raw(&[
        "audit",
        "public-key",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&from_file), public_pem, "{}", stderr(&from_file));
    let public_key = kept.join("audit-public.pem");
    std::fs::write(&public_key, &public_pem).unwrap();

    // Checkpoints arrive every second, heartbeats included, in the file and from the API.
    let (_, verify) = server.cli_json(&admin, &["audit", "verify"]);
    let head = verify["entriesVerified"].as_u64().unwrap();
    wait_until("two checkpoints of the current head", || {
        kept_lines(&file).iter().filter(|c| c.seq == head).count() >= 2
    });
    let (status, latest) = server.cli_json(&admin, &["audit", "checkpoint"]);
    assert_eq!(status, 0, "{latest}");
    assert_eq!(latest["seq"], head);
    let first_run = kept_lines(&file);
    let key_id = first_run[0].key_id.clone();

    // A stock Ed25519 tool checks a checkpoint over the documented text.
    openssl_verifies(first_run.last().unwrap(), &public_key, install.db.dir());

    server.stop();
    let (status, report) = prove(&install, &file, &public_key, &["--max-age", "1h"]);
    assert_eq!(status, 0, "{report}");
    assert_eq!(report["valid"], true);
    assert_eq!(report["checkpoints"]["failures"], Value::Array(vec![]));
    assert_eq!(report["checkpoints"]["checked"], first_run.len());

    // After a restart: the same key, and new checkpoints continue the old ones in the file.
    let server = install.start_with_config(&checkpoint_settings(&file));
    assert!(server.bootstrap_token.is_none());
    let out = server.cli(&admin, &["audit", "public-key"]);
    assert_eq!(stdout(&out), public_pem, "the key survived the restart");
    server.cli(
        &admin,
        &[
            "gate",
            "check",
            "--action",
            CANARY,
            "--environment",
            "production",
        ],
    );
    let newest_before = first_run.last().unwrap().at.clone();
    wait_until(
        "a checkpoint after the restart covering the new entry",
        || {
            kept_lines(&file)
                .iter()
                .any(|c| c.at > newest_before && c.seq > head)
        },
    );
    server.stop();
    let all = kept_lines(&file);
    assert!(all.iter().all(|c| c.key_id == key_id));
    assert!(
        all.windows(2)
            .all(|w| w[0].seq <= w[1].seq && w[0].at < w[1].at)
    );
    let (status, report) = prove(&install, &file, &public_key, &[]);
    assert_eq!(status, 0, "{report}");

    // A line altered in the file is caught by its signature.
    let altered = kept.join("altered.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut forged: SignedCheckpoint = serde_json::from_str(&lines[0]).unwrap();
    forged.seq += 100;
    lines[0] = serde_json::to_string(&forged).unwrap();
    std::fs::write(&altered, lines.join("\n")).unwrap();
    let (status, report) = prove(&install, &altered, &public_key, &[]);
    assert_eq!(status, 5, "{report}");
    let failures = report["checkpoints"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0]["line"], 1);
    assert!(
        failures[0]["problem"]
            .as_str()
            .unwrap()
            .contains("signature")
    );

    // A key that signed nothing here.
    let stranger = kept.join("stranger.pem");
    std::fs::write(
        &stranger,
        CheckpointKey::from_secret(&[1; 32]).public_key_pem(),
    )
    .unwrap();
    let (status, report) = prove(&install, &file, &stranger, &[]);
    assert_eq!(status, 5, "{report}");
}

/// Checks `checkpoint` with `openssl pkeyutl -verify -rawin` over the documented bytes.
fn openssl_verifies(checkpoint: &SignedCheckpoint, public_key: &Path, dir: &Path) {
    let message = dir.join("checkpoint.txt");
    let signature = dir.join("checkpoint.sig");
    std::fs::write(
        &message,
        format!(
            "deploy-safety checkpoint v1\n{}\n{}\n{}\n{}\n",
            checkpoint.seq, checkpoint.head_hash, checkpoint.at, checkpoint.key_id
        ),
    )
    .unwrap();
    let bytes: Vec<u8> = (0..checkpoint.signature.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&checkpoint.signature[i..i + 2], 16).unwrap())
        .collect();
    std::fs::write(&signature, bytes).unwrap();
    let run = |message: &Path| {
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
            .arg(public_key)
            .arg("-rawin")
            .arg("-in")
            .arg(message)
            .arg("-sigfile")
            .arg(&signature)
            .output()
            .expect("openssl (Debian package openssl) is needed by this test")
    };
    let out = run(&message);
    assert!(
        stdout(&out).contains("Signature Verified Successfully"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    std::fs::write(&message, "deploy-safety checkpoint v1\n0\n").unwrap();
    assert!(
        !run(&message).status.success(),
        "openssl refuses other bytes"
    );
}

/// Writes a log and checkpoints with the use cases, on a clock that starts at `start`, as a
/// server would have (so their times are known).
fn history_at(db: &TestDb, start: Timestamp, key: &CheckpointKey, file: &Path) -> u64 {
    let url = db.url();
    let key = key.clone();
    let file = file.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let store = tokio::task::spawn_blocking(move || Store::open(&url))
                .await
                .unwrap()
                .unwrap();
            let clock = Arc::new(ManualClock::new(start));
            let app = App::new(
                store,
                clock.clone(),
                AppSettings {
                    checkpoints: Some(CheckpointSettings {
                        key,
                        interval: Duration::from_secs(60),
                        file: Some(file),
                    }),
                    ..AppSettings::default()
                },
            );
            for n in 0..10 {
                app.create_token(&format!("ci-{n}"), Role::Developer, "test")
                    .await
                    .unwrap();
                clock.advance_millis(60_000);
                app.make_checkpoint(deploy_safety_app::Clock::now(clock.as_ref()))
                    .await
                    .unwrap()
                    .unwrap();
            }
            app.store()
                .read(|tx| tx.audit_head())
                .await
                .unwrap()
                .unwrap()
                .0
        })
    })
    .join()
    .unwrap()
}

#[test]
fn a_truncated_or_rehashed_log_is_caught_and_stale_checkpoints_fail_max_age() {
    let install = Installation::new();
    let file = install.db.dir().join("checkpoints.jsonl");
    let key = CheckpointKey::from_secret(&[5; 32]);
    let public_key = install.db.dir().join("public.pem");
    std::fs::write(&public_key, key.public_key_pem()).unwrap();
    // A history that ended an hour ago.
    let an_hour_ago = Timestamp::from_unix_millis(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
            - 3_600_000
            - 10 * 60_000,
    );
    let last = history_at(&install.db, an_hour_ago, &key, &file);
    assert_eq!(last, 10);

    let (status, report) = prove(&install, &file, &public_key, &["--max-age", "2h"]);
    assert_eq!(status, 0, "{report}");
    // The newest checkpoint is an hour old: checkpoints have stopped arriving.
    let (status, report) = prove(&install, &file, &public_key, &["--max-age", "5m"]);
    assert_eq!(status, 5, "{report}");
    let failures = report["checkpoints"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report}");
    assert!(
        failures[0]["problem"]
            .as_str()
            .unwrap()
            .contains("older than")
    );
    let out = install.offline(&[
        "audit",
        "verify",
        "--checkpoints",
        file.to_str().unwrap(),
        "--public-key",
        public_key.to_str().unwrap(),
        "--max-age",
        "5m",
    ]);
    assert_eq!(code(&out), 5);
    assert!(
        stdout(&out).contains("Checkpoints FAILED"),
        "{}",
        stdout(&out)
    );

    // Truncated after the last checkpoint, and covered up: the head record set back and the
    // stored checkpoints deleted. The chain alone verifies; the kept checkpoints do not.
    install.db.exec(
        "DELETE FROM audit_log WHERE seq > 7; \
         UPDATE audit_head SET seq = 7, hash = (SELECT hash FROM audit_log WHERE seq = 7); \
         DELETE FROM audit_checkpoints;",
    );
    let out = install.offline(&["audit", "verify"]);
    assert_eq!(
        code(&out),
        0,
        "the chain alone cannot tell: {}",
        stdout(&out)
    );
    let (status, report) = prove(&install, &file, &public_key, &[]);
    assert_eq!(status, 5, "{report}");
    assert_eq!(report["chain"]["valid"], true);
    let failures = report["checkpoints"]["failures"].as_array().unwrap();
    assert_eq!(
        failures.len(),
        3,
        "the checkpoints of entries 8, 9 and 10: {report}"
    );
    assert!(
        failures
            .iter()
            .all(|f| f["problem"].as_str().unwrap().contains("truncated")),
        "{report}"
    );
    let out = install.offline(&[
        "audit",
        "verify",
        "--checkpoints",
        file.to_str().unwrap(),
        "--public-key",
        public_key.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 5);
    assert!(stdout(&out).contains("truncated"), "{}", stdout(&out));
}

#[test]
fn a_rewritten_and_rehashed_log_is_caught_by_the_kept_checkpoints() {
    let install = Installation::new();
    let file = install.db.dir().join("checkpoints.jsonl");
    let key = CheckpointKey::from_secret(&[6; 32]);
    let public_key = install.db.dir().join("public.pem");
    std::fs::write(&public_key, key.public_key_pem()).unwrap();
    history_at(
        &install.db,
        Timestamp::from_unix_millis(1_764_547_200_000),
        &key,
        &file,
    );

    // Entry 4 rewritten, and every hash from it on recomputed, as someone who knows the
    // format (but not the signing key) would; the stored checkpoints deleted.
    let entries = read_entries(&install.db);
    let mut prev = entries[2].hash.clone();
    let mut sql = String::from("DELETE FROM audit_checkpoints; ");
    for entry in &entries[3..] {
        let mut draft_principal = entry.principal.clone();
        if entry.seq == 4 {
            draft_principal = "mallory".to_owned();
        }
        let mut rewritten = entry.clone();
        rewritten.principal = draft_principal;
        rewritten.prev_hash = prev.clone();
        rewritten.hash = rewritten.compute_hash();
        sql.push_str(&format!(
            "UPDATE audit_log SET principal = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {}; ",
            rewritten.principal, rewritten.prev_hash, rewritten.hash, rewritten.seq
        ));
        prev = rewritten.hash;
    }
    sql.push_str(&format!("UPDATE audit_head SET hash = '{prev}';"));
    install.db.exec(&sql);

    let out = install.offline(&["audit", "verify"]);
    assert_eq!(
        code(&out),
        0,
        "a re-hashed chain verifies alone: {}",
        stdout(&out)
    );
    let (status, report) = prove(&install, &file, &public_key, &[]);
    assert_eq!(status, 5, "{report}");
    let failures = report["checkpoints"]["failures"].as_array().unwrap();
    let named: BTreeSet<u64> = failures
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(named, (4..=10).collect(), "{report}");
    assert!(
        failures
            .iter()
            .all(|f| f["problem"].as_str().unwrap().contains("rewritten")),
        "{report}"
    );
}

/// Every entry, parsed, in seq order (the test's own read, through the store).
fn read_entries(db: &TestDb) -> Vec<AuditEntry> {
    let url = db.url();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let store = tokio::task::spawn_blocking(move || Store::open_read_only(&url))
                .await
                .unwrap()
                .unwrap();
            store
                .read(|tx| tx.audit_after(0, 1_000))
                .await
                .unwrap()
                .into_iter()
                .map(|stored| {
                    assert!(matches!(stored.at, StoredValue::Integer(_)));
                    stored.parse().unwrap()
                })
                .collect()
        })
    })
    .join()
    .unwrap()
}

/// `serve` that must fail at start: its output, within a deadline.
fn serve_fails(install: &Installation) -> std::process::Output {
    let url = install.database_url();
    let child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .current_dir(install.db.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match output.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the server started although it should have refused");
        }
    }
}

#[test]
fn the_server_refuses_a_signing_key_others_could_read_or_that_is_no_key() {
    let install = Installation::new();
    let key_file = install.db.dir().join("deploy-safety-audit-key.pem");
    install.start().stop();
    assert!(key_file.exists());

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve_fails(&install);
    assert_eq!(code(&out), 1);
    let message = stderr(&out);
    assert!(message.contains("deploy-safety-audit-key.pem"), "{message}");
    assert!(message.contains("chmod 600"), "{message}");

    std::fs::write(&key_file, "not a key").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = serve_fails(&install);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("cannot read the audit signing key"),
        "{}",
        stderr(&out)
    );
}
