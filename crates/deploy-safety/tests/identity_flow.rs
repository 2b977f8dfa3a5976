//! End to end through the real binary (SPEC §18): a settings file with `[[auth.oidc]]` and
//! `[auth.sso]` pointing at a real OIDC provider on 127.0.0.1 (`deploy-safety-fake-oidc`); a
//! pipeline's GitHub-Actions-shaped token as the CLI's `DEPLOY_SAFETY_TOKEN`; tokens that bind
//! to nothing or do not verify; and a person's single sign-on over real HTTP, their session
//! listed and revoked with `deploy-safety session`.
//!
//! The server runs on the system clock, so tokens are signed for now (`iat`/`nbf` = now,
//! `exp` = now + 5 minutes).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Installation, RunningServer, code, stderr, stdout};
use deploy_safety_fake_oidc::FakeProvider;
use serde_json::{Value, json};

const BLOCKED: i32 = 3;
const REFUSED: i32 = 4;

const CLIENT_ID: &str = "deploy-safety";
const CLIENT_SECRET: &str = "sso-client-secret-0123456789";
const PIPELINE: &str = "github:acme/payments@production";
const API: &str = "/api/deploy-safety";

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

/// A provider and a server that trusts it, for workloads and for people.
struct Setup {
    /// Runs the provider; dropped last.
    runtime: tokio::runtime::Runtime,
    provider: FakeProvider,
    install: Installation,
    server: RunningServer,
    /// The bootstrap security-team token.
    admin: String,
}

impl Setup {
    fn start() -> Setup {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let provider = runtime.block_on(FakeProvider::start());
        let issuer = provider.issuer();
        // The redirect URL names the server's address, so the address is chosen first.
        let listen = {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap().to_string()
        };
        let redirect_url = format!("http://{listen}{API}/auth/callback");
        provider.register_client(CLIENT_ID, CLIENT_SECRET, &redirect_url);
        let settings = format!(
            r#"
[auth]
provider_timeout_ms = 3000

[[auth.oidc]]
name = "github"
issuer = "{issuer}"
audience = "deploy-safety"

[[auth.oidc.bindings]]
claims = {{ repository = "acme/payments", environment = "production" }}
principal = "github:{{repository}}@{{environment}}"
role = "eng-lead"

[auth.sso]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_url = "{redirect_url}"
role_claim = "groups"
roles = {{ "platform-leads" = "eng-lead", "security" = "security-team" }}
"#
        );
        let install = Installation::new();
        let server = install.start_on(&listen, &settings);
        assert_eq!(server.url, format!("http://{listen}"));
        let admin = server
            .bootstrap_token
            .clone()
            .expect("a new installation prints a bootstrap token");
        Setup {
            runtime,
            provider,
            install,
            server,
            admin,
        }
    }

    /// A token as GitHub Actions mints it for a job in `repository`'s `environment`, valid now;
    /// each one different (its own `jti`), as each job's is.
    fn github_token(&self, repository: &str, environment: &str) -> String {
        static JOBS: AtomicU64 = AtomicU64::new(1);
        let now = now();
        let job = JOBS.fetch_add(1, Ordering::Relaxed);
        self.provider.sign(&json!({
            "iss": self.provider.issuer(),
            "aud": "deploy-safety",
            "sub": format!("repo:{repository}:environment:{environment}"),
            "repository": repository,
            "environment": environment,
            "ref": "refs/heads/main",
            "jti": format!("job-{job}"),
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }))
    }

    /// Every audit entry, newest first (one page is enough here), read with the CLI.
    fn audit(&self) -> Vec<Value> {
        let (status, page) = self
            .server
            .cli_json(&self.admin, &["audit", "list", "--limit", "500"]);
        assert_eq!(status, 0, "{page}");
        page["entries"].as_array().unwrap().clone()
    }
}

fn check(action: &str, environment: &str) -> Vec<String> {
    [
        "gate",
        "check",
        "--action",
        action,
        "--environment",
        environment,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn cli(server: &RunningServer, token: &str, args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    server.cli(token, &args)
}

/// A pipeline's OIDC token is its CLI credential: whoami, the gate, an override, the audit log.
#[test]
fn a_pipeline_uses_its_oidc_token_with_the_cli() {
    let setup = Setup::start();
    let server = &setup.server;
    let jwt = setup.github_token("acme/payments", "production");

    // whoami: the binding's principal, by the issuer's name.
    let out = server.cli(&jwt, &["whoami"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{PIPELINE} (eng-lead), by oidc:github\n")
    );
    let (status, whoami) = server.cli_json(&jwt, &["whoami"]);
    assert_eq!(status, 0, "{whoami}");
    assert_eq!(whoami["principal"], PIPELINE);
    assert_eq!(whoami["role"], "eng-lead");
    assert_eq!(whoami["authenticatedBy"], "oidc:github");
    assert_eq!(
        whoami["claims"],
        json!({"repository": "acme/payments", "environment": "production"}),
        "whoami shows the claims the binding matched: {whoami}"
    );
    assert!(whoami.get("tokenId").is_none(), "{whoami}");
    assert!(whoami.get("csrfToken").is_none(), "{whoami}");

    // The gate: production needs an override, staging does not.
    let production = check("deploy.canary.start", "production");
    let out = cli(server, &jwt, &production);
    assert_eq!(code(&out), BLOCKED, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("OVERRIDE_REQUIRED"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("Production actions require explicit override"),
        "{}",
        stdout(&out)
    );
    let out = cli(server, &jwt, &check("deploy.canary.start", "staging"));
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("ALLOWED"), "{}", stdout(&out));

    // The pipeline's role, eng-lead, could create a production canary override (SPEC §4), but
    // an override is a person's approval and workload identities never approve (§18): refused,
    // exit 4, and audited.
    let create = |token: &str| {
        server.cli(
            token,
            &[
                "override",
                "create",
                "--action",
                "deploy.canary.start",
                "--environment",
                "production",
                "--reason",
                "CHG-4711 payments hotfix",
                "--ttl-minutes",
                "30",
                "--json",
            ],
        )
    };
    let out = create(&jwt);
    assert_eq!(code(&out), REFUSED, "{}{}", stdout(&out), stderr(&out));
    let refused: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        refused["error"]["reason"], "WORKLOAD_CANNOT_APPROVE",
        "{refused}"
    );
    let out = cli(server, &jwt, &production);
    assert_eq!(code(&out), BLOCKED, "still blocked: {}", stdout(&out));

    // A person with the same role approves it; the pipeline's gated action then uses it.
    let lead = setup.install.create_token("lead-alice", "eng-lead");
    let out = create(&lead);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["approver"], "lead-alice", "{created}");

    let out = cli(server, &jwt, &production);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("OVERRIDE"), "{}", stdout(&out));
    let (status, decision) = server.cli_json(
        &jwt,
        &[
            "gate",
            "check",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
        ],
    );
    assert_eq!(status, 0, "{decision}");
    assert_eq!(decision["allowed"], true, "{decision}");
    assert_eq!(decision["reason"], "OVERRIDE", "{decision}");
    assert_eq!(decision["overrideId"], created["id"], "{decision}");

    // The audit log says a pipeline did it, and how it authenticated.
    let entries = setup.audit();
    let mine: Vec<&Value> = entries
        .iter()
        .filter(|e| e["principal"] == PIPELINE)
        .collect();
    let actions: Vec<&str> = mine.iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["principal.create", "security-gate.check"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let attempt = mine
        .iter()
        .find(|e| e["reason"] == "WORKLOAD_CANNOT_APPROVE")
        .unwrap_or_else(|| panic!("the refused override is audited: {actions:?}"));
    assert_eq!(attempt["decision"], "denied", "{attempt}");
    for entry in &mine {
        assert_eq!(
            entry["details"]["authenticatedBy"], "oidc:github",
            "every entry made on the pipeline's behalf names its issuer: {entry}"
        );
    }
    let checks: Vec<&&Value> = mine
        .iter()
        .filter(|e| e["action"] == "security-gate.check")
        .collect();
    assert_eq!(
        checks.len(),
        5,
        "two production checks blocked, one in staging, two allowed by the override: {checks:?}"
    );
    let created = mine
        .iter()
        .find(|e| e["action"] == "principal.create")
        .unwrap();
    assert_eq!(created["role"], "eng-lead", "{created}");
    let by_lead: Vec<&Value> = entries
        .iter()
        .filter(|e| e["principal"] == "lead-alice" && e["decision"] == "allowed")
        .collect();
    assert!(!by_lead.is_empty(), "the override's creation is audited");
    for entry in by_lead {
        assert_eq!(entry["details"]["authenticatedBy"], "token", "{entry}");
    }
    // The token itself is a credential: it is never written down.
    let all = serde_json::to_string(&entries).unwrap();
    assert!(!all.contains(&jwt), "the audit log holds the token");

    // A second run of the same job (a new token, the same claims) is the same principal.
    let again = setup.github_token("acme/payments", "production");
    assert_ne!(again, jwt);
    let (status, whoami) = server.cli_json(&again, &["whoami"]);
    assert_eq!(status, 0, "{whoami}");
    assert_eq!(whoami["principal"], PIPELINE);
    let creations = setup
        .audit()
        .iter()
        .filter(|e| e["action"] == "principal.create" && e["principal"] == PIPELINE)
        .count();
    assert_eq!(creations, 1, "the principal is made once");
}

/// A valid token that no binding matches is refused by policy (403 `NO_BINDING`, exit 4, and
/// audited with the claims checked); a token that does not verify is not authenticated (401,
/// which the CLI also reports as exit 4, "not authenticated, or not permitted").
#[test]
fn tokens_that_bind_to_nothing_or_do_not_verify_are_refused() {
    let setup = Setup::start();
    let server = &setup.server;

    // Signed by the issuer, but for another repository: no binding.
    let other = setup.github_token("acme/web", "production");
    let out = server.cli(&other, &["whoami"]);
    assert_eq!(code(&out), REFUSED, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("[NO_BINDING]"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no binding of `[[auth.oidc]]` `github` matches its claims"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let out = cli(server, &other, &check("deploy.canary.start", "staging"));
    assert_eq!(code(&out), REFUSED, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("[NO_BINDING]"), "{}", stderr(&out));
    let (status, body) = server.cli_json(&other, &["whoami"]);
    assert_eq!(status, REFUSED, "{body}");
    assert_eq!(body["error"]["reason"], "NO_BINDING", "{body}");

    let entries = setup.audit();
    let refusals: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "auth.authenticate" && e["reason"] == "NO_BINDING")
        .collect();
    // The same refusal is recorded once per ten minutes: a replayed token (anyone can mint
    // one on a public issuer) must not grow the audit log without end.
    assert_eq!(
        refusals.len(),
        1,
        "one record of the same refusal: {refusals:?}"
    );
    let refusal = refusals[0];
    assert_eq!(refusal["decision"], "denied", "{refusal}");
    assert_eq!(refusal["principal"], "oidc:github", "{refusal}");
    assert_eq!(
        refusal["details"]["sub"], "repo:acme/web:environment:production",
        "named by its subject: {refusal}"
    );
    assert_eq!(refusal["details"]["authenticatedBy"], "oidc:github");
    let checked = refusal["details"]["claims"].to_string();
    assert!(
        checked.contains("acme/web"),
        "the claims checked: {refusal}"
    );
    let all = serde_json::to_string(&entries).unwrap();
    assert!(!all.contains(&other), "the audit log holds the token");
    assert!(
        !entries.iter().any(|e| e["action"] == "principal.create"
            && e["principal"]
                .as_str()
                .is_some_and(|p| p.starts_with("github:"))),
        "no principal is made for a token that binds to nothing"
    );

    // Expired beyond the leeway, garbage, and forged: 401 from the server, exit 4 from the CLI,
    // with the server's message.
    let now = now();
    let expired = setup.provider.sign(&json!({
        "iss": setup.provider.issuer(), "aud": "deploy-safety",
        "sub": "repo:acme/payments:environment:production",
        "repository": "acme/payments", "environment": "production", "ref": "refs/heads/main",
        "iat": now - 900, "nbf": now - 900, "exp": now - 600,
    }));
    let forged = setup.provider.sign_with_foreign_key(&json!({
        "iss": setup.provider.issuer(), "aud": "deploy-safety",
        "sub": "repo:acme/payments:environment:production",
        "repository": "acme/payments", "environment": "production", "ref": "refs/heads/main",
        "iat": now, "nbf": now, "exp": now + 300,
    }));
    for (token, message) in [
        (expired.as_str(), "the token has expired"),
        ("not-a-token", "invalid or revoked token"),
        ("eyJhbGciOiJub25lIn0.e30.x", "not a valid JWT"),
        (forged.as_str(), "the token does not verify"),
    ] {
        let out = server.cli(token, &["whoami"]);
        assert_eq!(
            code(&out),
            REFUSED,
            "{token}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stderr(&out).starts_with("error: ") && stderr(&out).contains(message),
            "{message}: {}",
            stderr(&out)
        );
        let (status, body) = server.cli_json(token, &["whoami"]);
        assert_eq!(status, REFUSED, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
}

/// A header's value from a response, as text.
fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// A person signs in through the real server and provider; `deploy-safety session list` shows
/// the session, `session revoke` ends it, and the cookie stops working.
#[test]
fn a_person_signs_in_and_the_session_is_listed_and_revoked() {
    let setup = Setup::start();
    let server = &setup.server;
    setup.provider.set_user(json!({
        "sub": "u-alice",
        "email": "alice@example.com",
        "groups": ["engineering", "platform-leads"],
    }));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let cookie = setup.runtime.block_on(async {
        // To the provider, with PKCE, state and nonce.
        let login = http
            .get(format!("{}{API}/auth/login", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 303);
        // The cookie that ties this login to this browser; the callback must bring it back.
        let binding = header(&login, "set-cookie");
        assert!(binding.starts_with("ds_login="), "{binding}");
        let binding = binding.split(';').next().unwrap().to_owned();
        let authorize = header(&login, "location");
        assert!(
            authorize.starts_with(&format!("{}/authorize?", setup.provider.issuer())),
            "{authorize}"
        );
        // The provider signs alice in and sends her back with a code.
        let consent = http.get(&authorize).send().await.unwrap();
        assert_eq!(consent.status(), 302, "{:?}", consent.text().await);
        let back = header(&consent, "location");
        assert!(
            back.starts_with(&format!("{}{API}/auth/callback?", server.url)),
            "{back}"
        );
        let request = &setup.provider.authorize_requests()[0];
        assert_eq!(request.code_challenge_method.as_deref(), Some("S256"));
        assert!(request.nonce.is_some() && !request.state.is_empty());
        // The callback starts the session.
        let callback = http
            .get(&back)
            .header("cookie", &binding)
            .send()
            .await
            .unwrap();
        assert_eq!(callback.status(), 303, "{:?}", callback.text().await);
        // Without a `returnTo`, a person lands on the dashboard.
        assert_eq!(header(&callback, "location"), "/ui/");
        let set_cookie = header(&callback, "set-cookie");
        assert!(set_cookie.starts_with("ds_session=dss_"), "{set_cookie}");
        for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(set_cookie.contains(flag), "{flag}: {set_cookie}");
        }
        assert!(
            !set_cookie.contains("Secure"),
            "plain http on loopback: {set_cookie}"
        );
        // A state is single use: the same callback again starts nothing.
        let replay = http
            .get(&back)
            .header("cookie", &binding)
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), 400);
        // Only the login's binding cookie is cleared; no session starts.
        assert!(
            replay
                .headers()
                .get_all("set-cookie")
                .iter()
                .all(|c| !c.to_str().unwrap().starts_with("ds_session=")),
            "{:?}",
            replay.headers()
        );
        set_cookie.split(';').next().unwrap().to_owned()
    });

    let whoami = |cookie: &str| {
        setup.runtime.block_on(async {
            let response = http
                .get(format!("{}{API}/auth/whoami", server.url))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        })
    };
    let (status, me) = whoami(&cookie);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["principal"], "alice@example.com", "{me}");
    assert_eq!(
        me["role"], "eng-lead",
        "platform-leads maps to eng-lead: {me}"
    );
    assert_eq!(me["authenticatedBy"], "sso", "{me}");
    assert!(
        me["csrfToken"].as_str().is_some_and(|t| !t.is_empty()),
        "{me}"
    );

    // The session, listed directly on the database while the server runs.
    let out = setup.install.offline(&["session", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sessions: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    assert_eq!(session["principal"], "alice@example.com", "{session}");
    assert_eq!(session["role"], "eng-lead");
    assert!(session["revokedAt"].is_null(), "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let listed = String::from_utf8_lossy(&out.stdout);
    let secret = cookie.rsplit('.').next().unwrap();
    assert!(
        !listed.contains(secret),
        "the list never shows the cookie's secret"
    );
    assert!(!listed.contains(me["csrfToken"].as_str().unwrap()));
    let out = setup.install.offline(&["session", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&id) && stdout(&out).contains("active"),
        "{}",
        stdout(&out)
    );

    let out = setup.install.offline(&["session", "revoke", "--id", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("Revoked session {id}.\n"));

    let (status, body) = whoami(&cookie);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");

    let out = setup.install.offline(&["session", "list", "--json"]);
    let sessions: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        sessions[0]["revokedAt"].is_string(),
        "revoked in the list: {sessions}"
    );
    let out = setup.install.offline(&["session", "revoke", "--id", &id]);
    assert!(!out.status.success(), "revoking twice: {}", stdout(&out));

    // The login and the revocation are in the audit log.
    let entries = setup.audit();
    let login = entries
        .iter()
        .find(|e| e["action"] == "auth.login")
        .expect("the login is audited");
    assert_eq!(login["principal"], "alice@example.com", "{login}");
    assert_eq!(login["details"]["authenticatedBy"], "sso", "{login}");
    assert_eq!(login["details"]["sessionId"], id.as_str(), "{login}");
}
