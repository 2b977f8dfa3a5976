//! End to end: the real binary, started on a free port, driven by the real CLI.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Installation, code, stderr, stdout};

const BLOCKED: i32 = 3;
const REFUSED: i32 = 4;
const CHAIN_BROKEN: i32 = 5;

/// The runbook's "Production Canary (Override Required)" approval, and lockdown, through the CLI.
#[test]
fn production_override_flow_through_the_cli() {
    let install = Installation::new();
    let server = install.start();
    let admin = server
        .bootstrap_token
        .clone()
        .expect("a new installation prints a bootstrap token");
    // Tokens are created directly on the database while the server runs.
    let eng_lead = install.create_token("eng-lead", "eng-lead");
    let developer = install.create_token("dev", "developer");

    let check = [
        "gate",
        "check",
        "--action",
        "deploy.canary.start",
        "--environment",
        "production",
    ];

    // Without an override: blocked, with the reason and a hint.
    let out = server.cli(&developer, &check);
    assert_eq!(code(&out), BLOCKED, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("OVERRIDE_REQUIRED"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("Production actions require explicit override"));
    assert!(stdout(&out).contains("hint:"));

    // A developer may not create the override.
    let create = [
        "override",
        "create",
        "--action",
        "deploy.canary.start",
        "--environment",
        "production",
        "--reason",
        "Approved by CTO for release v1.2.3",
        "--ttl-minutes",
        "60",
    ];
    let out = server.cli(&developer, &create);
    assert_eq!(code(&out), REFUSED, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("OVERRIDE_NOT_PERMITTED"),
        "{}",
        stderr(&out)
    );

    // The engineering lead approves, as themself.
    let mut as_eng_lead = create.to_vec();
    as_eng_lead.extend(["--approver", "eng-lead"]);
    let (status, created) = server.cli_json(&eng_lead, &as_eng_lead);
    assert_eq!(status, 0, "{created}");
    assert_eq!(created["approver"], "eng-lead");
    assert_eq!(created["status"], "active");
    let override_id = created["id"].as_str().unwrap().to_owned();

    // Within the TTL window the gate allows it, naming the override.
    let (status, decision) = server.cli_json(&developer, &check);
    assert_eq!(status, 0, "{decision}");
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["reason"], "OVERRIDE");
    assert_eq!(decision["overrideId"], override_id.as_str());

    let out = server.cli(&developer, &["override", "list"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains(&override_id), "{}", stdout(&out));

    // Lockdown beats the override; only the security team changes the mode.
    let out = server.cli(
        &eng_lead,
        &["mode", "set", "lockdown", "--reason", "not mine to set"],
    );
    assert_eq!(code(&out), REFUSED);
    assert!(
        stderr(&out).contains("ROLE_NOT_PERMITTED"),
        "{}",
        stderr(&out)
    );
    let out = server.cli(
        &admin,
        &[
            "mode",
            "set",
            "lockdown",
            "--reason",
            "Security incident investigation",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = server.cli(&developer, &check);
    assert_eq!(code(&out), BLOCKED);
    assert!(stdout(&out).contains("LOCKDOWN"));
    assert!(stdout(&out).contains("Security incident investigation"));
    let (_, status) = server.cli_json(&developer, &["status"]);
    assert_eq!(status["mode"], "lockdown");
    assert_eq!(status["lockdownReason"], "Security incident investigation");
    assert_eq!(status["activeOverrides"], 1);

    let out = server.cli(&admin, &["mode", "set", "enforce"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // The creator revokes it; the gate blocks again.
    let out = server.cli(&eng_lead, &["override", "revoke", &override_id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("revoked"));
    assert_eq!(code(&server.cli(&developer, &check)), BLOCKED);

    // Everything is in the audit log, and the chain holds.
    let (status, page) = server.cli_json(
        &developer,
        &["audit", "list", "--action", "override.create"],
    );
    assert_eq!(status, 0);
    assert_eq!(page["entries"][0]["principal"], "eng-lead");
    let (_, denied) = server.cli_json(&developer, &["audit", "list", "--decision", "denied"]);
    assert!(denied["entries"].as_array().unwrap().len() >= 4, "{denied}");
    let out = server.cli(&developer, &["audit", "verify"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("Audit chain valid"));
    server.stop();
}

/// Gate state, overrides, tokens and the audit chain survive a restart; the chain is
/// verifiable offline, and tampering is caught and located.
#[test]
fn state_and_audit_chain_survive_a_restart() {
    let install = Installation::new();
    let server = install.start();
    let admin = server.bootstrap_token.clone().unwrap();
    let out = server.cli(
        &admin,
        &["threat", "set", "critical", "--reason", "active exploit"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (_, created) = server.cli_json(
        &admin,
        &[
            "override",
            "create",
            "--action",
            "deploy.rollback",
            "--environment",
            "production",
            "--reason",
            "Emergency: P1 incident INC-123",
            "--ttl-minutes",
            "30",
        ],
    );
    let override_id = created["id"].as_str().unwrap().to_owned();
    let (_, before) = server.cli_json(&admin, &["audit", "verify"]);
    assert_eq!(before["valid"], true);
    server.stop();

    let server = install.start();
    assert_eq!(
        server.bootstrap_token, None,
        "the bootstrap token is printed only once"
    );
    let (_, status) = server.cli_json(&admin, &["status"]);
    assert_eq!(
        status["mode"], "lockdown",
        "critical threat entered lockdown"
    );
    assert_eq!(status["threatLevel"], "critical");
    assert!(
        status["lockdownReason"]
            .as_str()
            .unwrap()
            .contains("active exploit")
    );
    let (status, shown) = server.cli_json(&admin, &["override", "show", &override_id]);
    assert_eq!(status, 0);
    assert_eq!(shown["status"], "active");
    let (_, after) = server.cli_json(&admin, &["audit", "verify"]);
    assert_eq!(after["valid"], true);
    assert_eq!(after["entriesVerified"], before["entriesVerified"]);
    assert_eq!(after["headHash"], before["headHash"]);

    // The chain continues after the restart.
    let out = server.cli(&admin, &["mode", "set", "enforce"]);
    assert_eq!(code(&out), 0);
    server.stop();

    let out = install.offline(&["audit", "verify", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let offline: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline["valid"], true);
    let verified = offline["entriesVerified"].as_u64().unwrap();
    assert_eq!(verified, before["entriesVerified"].as_u64().unwrap() + 1);

    // Someone edits history directly in the database.
    install
        .db
        .exec("UPDATE audit_log SET principal = 'mallory' WHERE seq = 2");
    let out = install.offline(&["audit", "verify"]);
    assert_eq!(code(&out), CHAIN_BROKEN, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("BROKEN at entry 2"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn tokens_are_managed_on_the_database() {
    let install = Installation::new();
    let token = install.create_token("ci-bot", "developer");
    assert!(token.starts_with("ds_"));

    let out = install.offline(&["token", "list"]);
    assert_eq!(code(&out), 0);
    let listed = stdout(&out);
    assert!(
        listed.contains("ci-bot") && listed.contains("developer"),
        "{listed}"
    );
    assert!(
        !listed.contains(token.split('.').nth(1).unwrap()),
        "secrets are never listed"
    );

    // A principal keeps its role for good: a second token with another role is refused; one
    // with the same role is a rotation.
    let out = install.offline(&["token", "create", "--name", "ci-bot", "--role", "eng-lead"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("exists with role developer"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    let rotated = install.create_token("ci-bot", "developer");
    assert_ne!(rotated, token);

    // The server was started after tokens existed: no bootstrap token.
    let server = install.start();
    assert_eq!(server.bootstrap_token, None);
    let (status, me) = server.cli_json(&token, &["whoami"]);
    assert_eq!(status, 0);
    assert_eq!(me["name"], "ci-bot");
    assert_eq!(me["role"], "developer");

    // Revoked while the server runs: refused at once, by the gate too (which keeps the tokens
    // it read while the database says nothing changed them). One token by id, then the
    // principal.
    let gate_check = [
        "gate",
        "check",
        "--action",
        "deploy.rollback",
        "--environment",
        "staging",
    ];
    for _ in 0..2 {
        assert_eq!(code(&server.cli(&rotated, &gate_check)), 0);
    }
    let rotated_id = rotated.trim_start_matches("ds_").split('.').next().unwrap();
    let out = install.offline(&["token", "revoke", "--id", rotated_id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&server.cli(&rotated, &gate_check)), REFUSED);
    assert_eq!(code(&server.cli(&rotated, &["whoami"])), REFUSED);
    assert_eq!(code(&server.cli(&token, &gate_check)), 0);
    assert_eq!(
        code(&server.cli(&token, &["whoami"])),
        0,
        "the other token still works"
    );
    let out = install.offline(&["token", "revoke", "ci-bot"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = server.cli(&token, &["whoami"]);
    assert_eq!(code(&out), REFUSED);
    assert!(
        stderr(&out).contains("invalid or revoked token"),
        "{}",
        stderr(&out)
    );
    let out = server.cli("ds_nonsense.x", &["status"]);
    assert_eq!(code(&out), REFUSED);
    server.stop();
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let out = std::process::Command::new(common::BINARY)
        .args(["status", "--server", "http://127.0.0.1:9"])
        .env_remove("DEPLOY_SAFETY_URL")
        .env("DEPLOY_SAFETY_TOKEN", "ds_x.y")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("cannot reach the server"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn database_passwords_never_reach_the_terminal() {
    let out = std::process::Command::new(common::BINARY)
        .args([
            "token",
            "list",
            "--database-url",
            "postgres://app:hunter2@127.0.0.1:1/deploy",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("app:***@"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("hunter2"));
}

#[test]
fn client_commands_without_a_token_say_how_to_get_one() {
    let out = std::process::Command::new(common::BINARY)
        .args(["status"])
        .env_remove("DEPLOY_SAFETY_TOKEN")
        .output()
        .unwrap();
    assert_eq!(code(&out), REFUSED);
    assert!(
        stderr(&out).contains("DEPLOY_SAFETY_TOKEN"),
        "{}",
        stderr(&out)
    );
}
