//! End to end through the real binary (SPEC §17): the settings file's `[integrations.*]`,
//! Flagger's webhooks, a poller and GitHub's signed webhook over real HTTP with `curl` — as
//! the integration pages show them — and the audit trail they leave, read with the CLI.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{Installation, RunningServer, code, stderr, stdout};
use deploy_safety_core::signature::signature_header;
use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "whsec-0123456789abcdef";

/// `curl` as the docs use it: the status and the body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {}", stderr(&out));
    let text = stdout(&out);
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

fn flagger(server: &RunningServer, hook: &str, body: &Value) -> (u16, String) {
    curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &body.to_string(),
        &format!(
            "{}/api/deploy-safety/integrations/flagger/{hook}",
            server.url
        ),
    ])
}

fn github_key(dir: &std::path::Path) -> String {
    let path = dir.join("github-app.pem");
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {}", stderr(&out));
    path.display().to_string()
}

#[test]
fn deploy_engines_ask_the_real_server_in_their_own_protocols() {
    let install = Installation::new();
    let key_dir = tempfile::tempdir().unwrap();
    let key = github_key(key_dir.path());
    let settings = format!(
        r#"
[integrations.flagger]
rollback_on_critical_incident = true

[integrations.flagger.namespaces]
payments = "staging"
payments-prod = "production"

[integrations.github]
app_id = "12345"
private_key_file = "{key}"
# Nothing listens here: the answer stays queued in the outbox, retried.
api_url = "http://127.0.0.1:9"
webhook_secret = "{WEBHOOK_SECRET}"

[integrations.github.environments]
prod = "production"
"#
    );
    let server = install.start_with_config(&settings);
    let token = install.create_token("flagger", "developer");

    // Flagger: the token in the webhook's metadata, the namespace mapped to staging.
    let canary = |namespace: &str| {
        json!({"name": "podinfo", "namespace": namespace, "phase": "Progressing",
               "checksum": "5f5697644f", "metadata": {"token": token}})
    };
    let (status, line) = flagger(&server, "confirm-rollout", &canary("payments"));
    assert_eq!(status, 200, "{line}");
    assert!(line.starts_with("ALLOWED: "), "{line}");
    let (status, line) = flagger(&server, "confirm-rollout", &canary("payments-prod"));
    assert_eq!(status, 403, "{line}");
    assert!(line.starts_with("OVERRIDE_REQUIRED: "), "{line}");
    let (status, line) = flagger(&server, "confirm-rollout", &canary("checkout"));
    assert_eq!(status, 400, "{line}");
    assert!(line.contains("[integrations.flagger.namespaces]"), "{line}");

    // A poller, as Argo Rollouts' web metric asks.
    let (status, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!(
            "{}/api/deploy-safety/integrations/decision?action=deploy.canary.start&environment=production&service=acme/payments&releaseId=0123abc",
            server.url
        ),
    ]);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["decision"], "wait", "{answer}");
    assert_eq!(answer["reason"], "OVERRIDE_REQUIRED");

    // GitHub: a wrong signature is refused; a signed request for `prod` waits for an override.
    let event = json!({
        "action": "requested",
        "environment": "prod",
        "event": "push",
        "deployment_callback_url": "http://127.0.0.1:9/repos/acme/payments/actions/runs/42/deployment_protection_rule",
        "deployment": {"id": 1, "sha": "0123abc", "ref": "main", "environment": "prod"},
        "repository": {"id": 2, "full_name": "acme/payments", "name": "payments"},
        "installation": {"id": 77},
        "sender": {"login": "octocat"},
    })
    .to_string();
    let url = format!(
        "{}/api/deploy-safety/integrations/github/deployment-protection-rule",
        server.url
    );
    let post = |signature: &str| {
        curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-GitHub-Event: deployment_protection_rule",
            "-H",
            &format!("X-Hub-Signature-256: {signature}"),
            "-d",
            &event,
            &url,
        ])
    };
    let (status, body) = post(&signature_header("not-the-secret", event.as_bytes()));
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(&signature_header(WEBHOOK_SECRET, event.as_bytes()));
    assert_eq!(status, 202, "{body}");
    let receipt: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(receipt["request"]["state"], "pending", "{receipt}");
    assert_eq!(receipt["request"]["environment"], "production");
    assert_eq!(receipt["request"]["reason"], "OVERRIDE_REQUIRED");
    let (status, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!(
            "{}/api/deploy-safety/integrations/github/pending",
            server.url
        ),
    ]);
    assert_eq!(status, 200, "{body}");
    let pending: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        pending["requests"].as_array().map(Vec::len),
        Some(1),
        "{pending}"
    );

    // The audit trail tells each integration's answers apart, and the chain verifies.
    for (action, decision) in [
        ("integration.flagger.confirm-rollout", "allowed"),
        ("integration.decision", "denied"),
        ("integration.github.deployment-protection-rule", "denied"),
    ] {
        let (exit, page) = server.cli_json(&token, &["audit", "list", "--action", action]);
        assert_eq!(exit, 0, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert!(
            entries.iter().any(|e| e["decision"] == decision),
            "{action}: {page}"
        );
    }
    let out = server.cli(&token, &["audit", "verify"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    server.stop();
}

#[test]
fn integration_settings_that_name_no_environment_stop_the_server_from_starting() {
    let install = Installation::new();
    let path = install_settings(
        &install,
        "[integrations.flagger.namespaces]\npayments = \"qa\"\n",
    );
    let out = install.offline_raw(&["print-config", "--config", &path]);
    assert_ne!(code(&out), 0);
    let text = stderr(&out);
    assert!(
        text.contains("integrations.flagger.namespaces.payments") && text.contains("qa"),
        "{text}"
    );
    let path = install_settings(
        &install,
        &format!(
            "[integrations.github]\napp_id = \"1\"\nprivate_key_file = \"/nonexistent.pem\"\nwebhook_secret = \"{WEBHOOK_SECRET}\"\n"
        ),
    );
    let out = install.offline_raw(&["print-config", "--config", &path]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("integrations.github.private_key_file"),
        "{}",
        stderr(&out)
    );
}

fn install_settings(install: &Installation, toml: &str) -> String {
    let path = install.db.dir().join("settings-check.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}
