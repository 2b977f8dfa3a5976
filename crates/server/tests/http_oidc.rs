//! Workload identity over HTTP (SPEC §18): a pipeline's OIDC token as its bearer credential,
//! verified against a real OpenID Connect provider on 127.0.0.1 (`deploy-safety-fake-oidc`):
//! discovery and JWKS over real HTTP, keys rotated, retired and withheld, an issuer that lies
//! or never answers.
//!
//! The App runs on the harness's `ManualClock`; every token is minted for that clock (its
//! `iat`/`nbf`/`exp` are relative to [`Harness::clock`]), so expiry and the 10-second refetch
//! limit are moved by advancing the clock, never by sleeping.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{API, Harness, assert_error};
use deploy_safety_app::{AppSettings, AuthSettings, Clock, MAX_TOKEN_BYTES, OidcIssuerSettings};
use deploy_safety_core::Role;
use deploy_safety_core::identity::{Binding, ClaimPattern, PrincipalTemplate};
use deploy_safety_fake_oidc::FakeProvider;
use deploy_safety_server::HttpSettings;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

const AUDIENCE: &str = "deploy-safety";
/// What binding 0 makes of the production deploy of `acme/payments`.
const PAYMENTS_PROD: &str = "github:acme/payments@production";
const CANARY: &str = "deploy.canary.start";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn binding(claims: &[(&str, &str)], principal: &str, role: Role) -> Binding {
    Binding {
        claims: claims
            .iter()
            .map(|(name, pattern)| ((*name).to_owned(), ClaimPattern::new(pattern)))
            .collect(),
        principal: PrincipalTemplate::parse(principal).unwrap(),
        role,
    }
}

/// An `[[auth.oidc]]` issuer named `name` trusting `provider`, with GitHub-Actions-shaped
/// bindings, in the order they are tried:
///
/// 0. `acme/payments` deploying `production` from `main` → `github:{repository}@{environment}`,
///    developer;
/// 1. `acme/legacy` → `eng-lead`, developer: a name a static token already holds as eng-lead
///    (principal permanence);
/// 2. any `acme/*` repository → `github:{repository}`, oncall-lead.
fn github_issuer(name: &str, provider: &FakeProvider) -> OidcIssuerSettings {
    OidcIssuerSettings {
        name: name.to_owned(),
        issuer: provider.issuer(),
        audience: AUDIENCE.to_owned(),
        jwks_url: None,
        algorithms: vec![Algorithm::RS256],
        leeway_seconds: 60,
        max_token_age_minutes: 60,
        bindings: vec![
            binding(
                &[
                    ("repository", "acme/payments"),
                    ("environment", "production"),
                    ("ref", "refs/heads/main"),
                ],
                "github:{repository}@{environment}",
                Role::Developer,
            ),
            binding(
                &[("repository", "acme/legacy")],
                "eng-lead",
                Role::Developer,
            ),
            binding(
                &[("repository", "acme/*")],
                "github:{repository}",
                Role::OncallLead,
            ),
        ],
    }
}

fn settings(issuers: Vec<OidcIssuerSettings>, provider_timeout: Duration) -> AppSettings {
    AppSettings {
        auth: AuthSettings {
            oidc: issuers,
            sso: None,
            provider_timeout,
        },
        ..AppSettings::default()
    }
}

/// A harness trusting one fresh provider as issuer `github`.
async fn setup() -> (Harness, FakeProvider) {
    let provider = FakeProvider::start().await;
    let h = Harness::with_app_settings(
        HttpSettings::default(),
        settings(
            vec![github_issuer("github", &provider)],
            Duration::from_secs(3),
        ),
    )
    .await;
    (h, provider)
}

/// The App's clock in Unix seconds: what tokens are minted against.
fn now(h: &Harness) -> i64 {
    h.clock.now().unix_millis() / 1000
}

/// The claims of a GitHub Actions OIDC token for `repository` deploying `environment` from
/// `main`, issued by `provider` just now, valid for five minutes.
fn actions_claims(
    h: &Harness,
    provider: &FakeProvider,
    repository: &str,
    environment: &str,
) -> Value {
    let now = now(h);
    json!({
        "iss": provider.issuer(),
        "aud": AUDIENCE,
        "sub": format!("repo:{repository}:environment:{environment}"),
        "repository": repository,
        "repository_owner": repository.split('/').next().unwrap(),
        "environment": environment,
        "ref": "refs/heads/main",
        "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
        "workflow": "deploy",
        "actor": "octocat",
        "run_id": "7000000001",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    })
}

/// A good token for the production deploy of `acme/payments` (binding 0).
fn payments_prod(h: &Harness, provider: &FakeProvider) -> String {
    provider.sign(&actions_claims(h, provider, "acme/payments", "production"))
}

/// An RS256 token under the current key but with `kid` in its header.
fn with_kid(provider: &FakeProvider, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".to_owned());
    header.kid = Some(kid.to_owned());
    provider.sign_with_header(header, claims)
}

async fn whoami(h: &Harness, jwt: &str) -> (StatusCode, Value) {
    h.get("/auth/whoami", jwt).await
}

/// Every audit entry, newest first (the tests write far fewer than a page).
async fn all_audit(h: &Harness) -> Vec<Value> {
    h.audit("limit=1000").await
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// A pipeline authenticates
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_github_actions_token_authenticates_as_the_first_matching_binding() {
    let (h, provider) = setup().await;

    let (status, me) = whoami(&h, &payments_prod(&h, &provider)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["authenticatedBy"], "oidc:github");
    assert_eq!(me["principal"], PAYMENTS_PROD);
    assert_eq!(me["name"], PAYMENTS_PROD);
    assert_eq!(me["role"], "developer");
    // Only what binding 0 looked at: not sub, aud, actor, sha, times...
    assert_eq!(
        me["claims"],
        json!({
            "repository": "acme/payments",
            "environment": "production",
            "ref": "refs/heads/main",
        })
    );
    assert!(me.get("tokenId").is_none_or(Value::is_null), "{me}");
    assert!(me.get("csrfToken").is_none_or(Value::is_null), "{me}");

    // Each token shape goes to the first binding whose claims all match.
    let cases = [
        // Binding 0 needs production: staging of the same repository falls to the glob.
        (
            "acme/payments",
            "staging",
            "github:acme/payments",
            "oncall-lead",
        ),
        ("acme/web", "production", "github:acme/web", "oncall-lead"),
        (
            "acme/infra/tools",
            "dev",
            "github:acme/infra/tools",
            "oncall-lead",
        ),
    ];
    for (repository, environment, principal, role) in cases {
        let jwt = provider.sign(&actions_claims(&h, &provider, repository, environment));
        let (status, me) = whoami(&h, &jwt).await;
        assert_eq!(status, StatusCode::OK, "{repository}@{environment}: {me}");
        assert_eq!(me["authenticatedBy"], "oidc:github");
        assert_eq!(me["principal"], principal, "{repository}@{environment}");
        assert_eq!(me["role"], role, "{repository}@{environment}");
        assert_eq!(
            me["claims"],
            json!({"repository": repository}),
            "the glob binding looks at the repository only"
        );
    }

    // A token from a branch other than main is not binding 0's either.
    let mut claims = actions_claims(&h, &provider, "acme/payments", "production");
    claims["ref"] = json!("refs/heads/feature");
    let (status, me) = whoami(&h, &provider.sign(&claims)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["principal"], "github:acme/payments");
}

#[tokio::test]
async fn static_tokens_keep_working_beside_oidc() {
    let (h, provider) = setup().await;
    // The issuer is in use...
    let (status, _) = whoami(&h, &payments_prod(&h, &provider)).await;
    assert_eq!(status, StatusCode::OK);
    // ...and static tokens are still themselves.
    for (token, name) in [
        (&h.tokens.security, "security-team"),
        (&h.tokens.developer, "developer"),
    ] {
        let (status, me) = whoami(&h, token).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["authenticatedBy"], "token");
        assert_eq!(me["principal"], name);
        let token_id = me["tokenId"].as_str().unwrap();
        assert!(token.contains(token_id), "{me}");
        assert!(me.get("claims").is_none_or(Value::is_null), "{me}");
    }
    // A static token never looks like a JWT, so no key is fetched for it.
    let fetches = provider.jwks_fetches();
    whoami(&h, &h.tokens.oncall).await;
    assert_eq!(provider.jwks_fetches(), fetches);
}

#[tokio::test]
async fn a_pipelines_gated_actions_are_decided_and_audited_as_that_pipeline() {
    let (h, provider) = setup().await;
    let jwt = payments_prod(&h, &provider);

    // The runbook's production check: no override, so no deploy.
    let (status, decision) = h
        .post(
            "/security-gate/check",
            &jwt,
            json!({"action": CANARY, "environment": "production", "releaseId": "v1.2.3"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(
        decision["message"],
        "Production actions require explicit override"
    );
    let production_seq = decision["auditSeq"].as_u64().unwrap();

    // Staging needs none.
    let (status, decision) = h
        .post(
            "/security-gate/check",
            &jwt,
            json!({"action": CANARY, "environment": "staging"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["reason"], "ALLOWED");
    let staging_seq = decision["auditSeq"].as_u64().unwrap();

    // A developer-level pipeline cannot change the mode.
    let got = h
        .post(
            "/security-gate/mode",
            &jwt,
            json!({"mode": "monitor", "reason": "a pipeline tries"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("ROLE_NOT_PERMITTED"),
        None,
    );
    assert_eq!(
        h.status().await["mode"],
        "enforce",
        "the refusal changed nothing"
    );

    // And a person's static token beside it, for contrast.
    let by_token = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    let token_seq = by_token["auditSeq"].as_u64().unwrap();

    let pipeline = h
        .audit(&format!("principal={}", encode(PAYMENTS_PROD)))
        .await;
    let gate_entries: Vec<&Value> = pipeline
        .iter()
        .filter(|e| e["action"] != "principal.create")
        .collect();
    let summary: Vec<(&str, &str, &str)> = gate_entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["decision"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("security-gate.mode.set", "denied", "ROLE_NOT_PERMITTED"),
            ("security-gate.check", "allowed", "ALLOWED"),
            ("security-gate.check", "denied", "OVERRIDE_REQUIRED"),
        ]
    );
    for entry in &gate_entries {
        assert_eq!(entry["principal"], PAYMENTS_PROD, "{entry}");
        assert_eq!(entry["role"], "developer", "{entry}");
        assert_eq!(
            entry["details"]["authenticatedBy"], "oidc:github",
            "{entry}"
        );
    }
    assert_eq!(gate_entries[2]["seq"], production_seq);
    assert_eq!(gate_entries[2]["environment"], "production");
    assert_eq!(gate_entries[1]["seq"], staging_seq);

    let by_token = h.audit(&format!("cursor={}&limit=1", token_seq + 1)).await;
    assert_eq!(by_token[0]["seq"], token_seq);
    assert_eq!(by_token[0]["principal"], "developer");
    assert_eq!(by_token[0]["details"]["authenticatedBy"], "token");
}

// ---------------------------------------------------------------------------------------------
// Tokens that do not verify
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_invalid_token_is_401_with_a_message_and_writes_nothing() {
    let (h, provider) = setup().await;
    let good = |h: &Harness| actions_claims(h, &provider, "acme/payments", "production");
    let start = now(&h);
    let kid = provider.current_kid();

    // Positive controls first: they warm the key cache and create the principal, so what
    // follows can be compared against an audit log that no longer changes.
    let mut within_leeway = good(&h);
    within_leeway["iat"] = json!(start - 600);
    within_leeway["nbf"] = json!(start - 600);
    within_leeway["exp"] = json!(start - 30);
    let mut nbf_within_leeway = good(&h);
    nbf_within_leeway["nbf"] = json!(start + 30);
    let mut aud_list = good(&h);
    aud_list["aud"] = json!(["something-else", AUDIENCE]);
    let mut no_nbf = good(&h);
    no_nbf.as_object_mut().unwrap().remove("nbf");
    for (name, jwt) in [
        ("a good token", provider.sign(&good(&h))),
        (
            "exp 30 s ago, within the 60 s leeway",
            provider.sign(&within_leeway),
        ),
        (
            "nbf 30 s ahead, within the leeway",
            provider.sign(&nbf_within_leeway),
        ),
        ("aud as a list holding ours", provider.sign(&aud_list)),
        ("no nbf at all", provider.sign(&no_nbf)),
    ] {
        let (status, me) = whoami(&h, &jwt).await;
        assert_eq!(status, StatusCode::OK, "{name}: {me}");
        assert_eq!(me["principal"], PAYMENTS_PROD, "{name}");
    }

    // Past the refetch window of the first fetch, so the unknown kid below does ask.
    h.clock.advance_millis(11_000);
    let now = now(&h);
    let with = |field: &str, value: Value| {
        let mut claims = good(&h);
        claims[field] = value;
        claims
    };
    let without = |field: &str| {
        let mut claims = good(&h);
        claims.as_object_mut().unwrap().remove(field);
        claims
    };
    let header = |alg: Algorithm, typ: Option<&str>, kid: Option<&str>| {
        let mut header = Header::new(alg);
        header.typ = typ.map(str::to_owned);
        header.kid = kid.map(str::to_owned);
        header
    };
    let good_jwt = provider.sign(&good(&h));
    let oversized = provider.sign(&with("padding", json!("x".repeat(MAX_TOKEN_BYTES))));
    assert!(oversized.len() > MAX_TOKEN_BYTES);

    let cases: Vec<(&str, String)> = vec![
        (
            "wrong audience",
            provider.sign(&with("aud", json!("another-service"))),
        ),
        ("no audience", provider.sign(&without("aud"))),
        (
            "an untrusted issuer",
            provider.sign(&with("iss", json!("https://token.actions.example.com"))),
        ),
        (
            "the trusted issuer with a trailing slash (matched exactly)",
            provider.sign(&with("iss", json!(format!("{}/", provider.issuer())))),
        ),
        ("no issuer", provider.sign(&without("iss"))),
        (
            "expired beyond the leeway",
            provider.sign(&{
                let mut claims = with("exp", json!(now - 61));
                claims["iat"] = json!(now - 600);
                claims["nbf"] = json!(now - 600);
                claims
            }),
        ),
        (
            "nbf in the future",
            provider.sign(&with("nbf", json!(now + 120))),
        ),
        (
            "iat in the future",
            provider.sign(&{
                let mut claims = with("iat", json!(now + 120));
                claims["nbf"] = json!(now);
                claims
            }),
        ),
        (
            "older than max_token_age_minutes, though exp is far away",
            provider.sign(&{
                let mut claims = with("iat", json!(now - 60 * 60 - 120));
                claims["nbf"] = json!(now - 60 * 60 - 120);
                claims["exp"] = json!(now + 3600);
                claims
            }),
        ),
        ("alg none", provider.unsigned(&good(&h))),
        (
            "HS256 keyed with the public key",
            provider.sign_hs256_with_public_key(&good(&h)),
        ),
        (
            "RS384 when only RS256 is allowed",
            provider.sign_with_header(header(Algorithm::RS384, Some("JWT"), Some(&kid)), &good(&h)),
        ),
        (
            "signed by a key the provider never published",
            provider.sign_with_foreign_key(&good(&h)),
        ),
        (
            "typ at+jwt",
            provider.sign_with_header(
                header(Algorithm::RS256, Some("at+jwt"), Some(&kid)),
                &good(&h),
            ),
        ),
        (
            "no kid",
            provider.sign_with_header(header(Algorithm::RS256, Some("JWT"), None), &good(&h)),
        ),
        (
            "an unknown kid",
            with_kid(&provider, "no-such-key", &good(&h)),
        ),
        ("no exp", provider.sign(&without("exp"))),
        ("no iat", provider.sign(&without("iat"))),
        (
            "exp as a string",
            provider.sign(&with("exp", json!((now + 300).to_string()))),
        ),
        ("garbage", "a.b.c".to_owned()),
        ("a signature from another token", {
            let other = provider.sign(&with("repository", json!("acme/other")));
            let (head_and_body, _) = good_jwt.rsplit_once('.').unwrap();
            let (_, signature) = other.rsplit_once('.').unwrap();
            format!("{head_and_body}.{signature}")
        }),
        ("cut in half", good_jwt[..good_jwt.len() / 2].to_owned()),
        (
            "cut short inside the signature",
            good_jwt[..good_jwt.len() - 10].to_owned(),
        ),
        ("longer than 16 KiB", oversized),
        ("empty", String::new()),
    ];

    let before = all_audit(&h).await;
    let fetches = provider.jwks_fetches();
    for (name, jwt) in &cases {
        let reply = h
            .raw(
                Method::GET,
                &format!("{API}/auth/whoami"),
                Some(&format!("Bearer {jwt}")),
                None,
            )
            .await;
        assert!(!reply.status.is_server_error(), "{name}: {reply:?}");
        assert_error(
            &(reply.status, reply.json()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
            None,
        );
        // The token's shape decides whether it is taken for a JWT; either way it is refused.
        let (status, _) = h
            .post(
                "/security-gate/check",
                jwt,
                json!({"action": CANARY, "environment": "staging"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: a gated call too");
    }
    assert_eq!(
        all_audit(&h).await,
        before,
        "a 401 writes no audit entry (an unauthenticated caller cannot fill the log)"
    );
    assert_eq!(
        provider.jwks_fetches(),
        fetches + 1,
        "only the unknown kid refetched the keys, once"
    );

    // The good token still works after all that.
    let (status, _) = whoami(&h, &good_jwt).await;
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Valid tokens that bind to nothing, or to a name that is taken
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_token_that_no_binding_matches_is_403_no_binding_and_audited_without_the_token() {
    let (h, provider) = setup().await;
    let claims = actions_claims(&h, &provider, "evil/payments", "production");
    let jwt = provider.sign(&claims);

    let got = whoami(&h, &jwt).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("NO_BINDING"),
        None,
    );
    let message = got.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("github"), "names the issuer: {message}");
    // A gated action with it is refused the same way, before it is decided.
    let got = h
        .post(
            "/security-gate/check",
            &jwt,
            json!({"action": CANARY, "environment": "staging"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("NO_BINDING"),
        None,
    );

    // The same refusal again (a replayed token: anyone can mint one on a public issuer) is
    // recorded once per window, not once per request.
    let entries = h.audit("action=auth.authenticate").await;
    assert_eq!(
        entries.len(),
        1,
        "one record for the same refusal: {entries:?}"
    );
    for entry in &entries {
        assert_eq!(entry["decision"], "denied");
        assert_eq!(entry["reason"], "NO_BINDING");
        // The subject is the token's word, not a principal's name: the issuer is the principal.
        assert_eq!(entry["principal"], "oidc:github");
        let details = &entry["details"];
        assert_eq!(details["sub"], "repo:evil/payments:environment:production");
        assert_eq!(details["authenticatedBy"], "oidc:github");
        // The claims the bindings look at, with the token's values: what an operator needs to
        // see why nothing matched.
        assert_eq!(
            details["claims"],
            json!({
                "repository": "evil/payments",
                "environment": "production",
                "ref": "refs/heads/main",
            })
        );
        assert!(details["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // After the window it is recorded again.
    h.clock
        .advance_millis(deploy_safety_app::REFUSAL_AUDIT_WINDOW_MS + 1);
    let mut later = claims.clone();
    later["iat"] = json!(now(&h));
    later["nbf"] = json!(now(&h));
    later["exp"] = json!(now(&h) + 300);
    let got = whoami(&h, &provider.sign(&later)).await;
    assert_eq!(got.0, StatusCode::FORBIDDEN);
    assert_eq!(h.audit("action=auth.authenticate").await.len(), 2);
    assert!(
        h.audit("action=security-gate.check").await.is_empty(),
        "no decision was made for it"
    );
    assert!(
        h.audit(
            "action=principal.create&principal=repo%3Aevil%2Fpayments%3Aenvironment%3Aproduction"
        )
        .await
        .is_empty()
    );

    // The token is a bearer credential: no part of it is written anywhere.
    let log = serde_json::to_string(&all_audit(&h).await).unwrap();
    let signature = jwt.rsplit('.').next().unwrap();
    assert!(!log.contains(&jwt), "the token is in the audit log");
    assert!(
        !log.contains(signature),
        "the token's signature is in the audit log"
    );
}

#[tokio::test]
async fn a_binding_cannot_give_an_existing_principal_another_role() {
    let (h, provider) = setup().await;
    // Binding 1 maps acme/legacy to `eng-lead` as a developer; `eng-lead` is a static token's
    // principal with role eng-lead.
    let jwt = provider.sign(&actions_claims(&h, &provider, "acme/legacy", "production"));
    for _ in 0..2 {
        let got = whoami(&h, &jwt).await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("PRINCIPAL_ROLE_CONFLICT"),
            None,
        );
        let message = got.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("eng-lead"), "{message}");
    }
    let entries = h.audit("action=auth.authenticate").await;
    let conflicts: Vec<&Value> = entries
        .iter()
        .filter(|e| e["reason"] == "PRINCIPAL_ROLE_CONFLICT")
        .collect();
    assert_eq!(
        conflicts.len(),
        1,
        "the same refusal is recorded once per window: {entries:?}"
    );
    for entry in conflicts {
        assert_eq!(entry["decision"], "denied");
        assert_eq!(entry["principal"], "eng-lead");
        assert_eq!(entry["details"]["authenticatedBy"], "oidc:github");
        assert_eq!(entry["details"]["existingRole"], "eng-lead");
        assert_eq!(entry["details"]["boundRole"], "developer");
    }
    // The person keeps their role.
    let (status, me) = whoami(&h, &h.tokens.eng_lead).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "eng-lead");
    assert!(
        h.audit("action=principal.create&principal=eng-lead")
            .await
            .iter()
            .all(|e| e["details"]["authenticatedBy"] != "oidc:github"),
        "no principal was made by the binding"
    );
}

#[tokio::test]
async fn a_new_pipeline_principal_is_created_once_on_first_use() {
    let (h, provider) = setup().await;
    let query = format!(
        "action=principal.create&principal={}",
        encode(PAYMENTS_PROD)
    );
    assert!(h.audit(&query).await.is_empty(), "not before its first use");

    for _ in 0..3 {
        let (status, _) = whoami(&h, &payments_prod(&h, &provider)).await;
        assert_eq!(status, StatusCode::OK);
        h.clock.advance_minutes(1);
    }
    // A fresh App on the same database (another replica, or this one restarted) finds it there.
    let replica = deploy_safety_app::App::new(
        open_store(&h).await,
        h.clock.clone(),
        settings(
            vec![github_issuer("github", &provider)],
            Duration::from_secs(3),
        ),
    );
    let replica = deploy_safety_server::router(replica, &HttpSettings::default());
    let reply = common::send(
        &replica,
        Method::GET,
        &format!("{API}/auth/whoami"),
        Some(&format!("Bearer {}", payments_prod(&h, &provider))),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");

    let created = h.audit(&query).await;
    assert_eq!(created.len(), 1, "{created:?}");
    let entry = &created[0];
    assert_eq!(entry["role"], "developer");
    assert_eq!(entry["decision"], "recorded");
    assert_eq!(entry["details"]["authenticatedBy"], "oidc:github");
    assert_eq!(entry["details"]["role"], "developer");
    assert_eq!(entry["details"]["claims"]["repository"], "acme/payments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_uses_create_the_principal_once() {
    let (h, provider) = setup().await;
    // Warm the keys, so the requests below race on the principal only.
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK
    );
    let jwt = provider.sign(&actions_claims(&h, &provider, "acme/web", "staging"));
    let requests = (0..8).map(|_| whoami(&h, &jwt));
    for (status, me) in futures_util::future::join_all(requests).await {
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["principal"], "github:acme/web");
    }
    let created = h
        .audit(&format!(
            "action=principal.create&principal={}",
            encode("github:acme/web")
        ))
        .await;
    assert_eq!(created.len(), 1, "{created:?}");
}

async fn open_store(h: &Harness) -> deploy_safety_store::Store {
    let url = h.db.url();
    // Off the async threads: the PostgreSQL client blocks.
    std::thread::spawn(move || deploy_safety_store::Store::open(&url))
        .join()
        .unwrap()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_verifies() {
    let (h, provider) = setup().await;
    let old = payments_prod(&h, &provider);
    assert_eq!(whoami(&h, &old).await.0, StatusCode::OK);
    assert_eq!(provider.discovery_fetches(), 1);
    assert_eq!(provider.jwks_fetches(), 1);

    h.clock.advance_millis(11_000);
    let new_kid = provider.rotate_key();
    let new = payments_prod(&h, &provider);
    assert!(new.len() > 10 && new_kid == provider.current_kid());
    for jwt in [&new, &new, &old] {
        let (status, me) = whoami(&h, jwt).await;
        assert_eq!(status, StatusCode::OK, "{me}");
    }
    assert_eq!(
        provider.jwks_fetches(),
        2,
        "the new kid refetched once; the old one is still cached"
    );
    assert_eq!(
        provider.discovery_fetches(),
        1,
        "the JWKS address is remembered"
    );
}

#[tokio::test]
async fn unknown_kids_refetch_the_keys_at_most_once_per_10_seconds() {
    let (h, provider) = setup().await;
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK
    );
    assert_eq!(provider.jwks_fetches(), 1);
    h.clock.advance_millis(11_000);

    let unknown = |h: &Harness, kid: &str| {
        with_kid(
            &provider,
            kid,
            &actions_claims(h, &provider, "acme/payments", "production"),
        )
    };
    assert_eq!(
        whoami(&h, &unknown(&h, "kid-a")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        provider.jwks_fetches(),
        2,
        "the first unknown kid refetches"
    );

    h.clock.advance_millis(5_000);
    assert_eq!(
        whoami(&h, &unknown(&h, "kid-b")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        whoami(&h, &unknown(&h, "kid-c")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        provider.jwks_fetches(),
        2,
        "within 10 s of the last fetch, unknown kids do not reach the provider"
    );
    // Known keys are unaffected by the limit.
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK
    );

    // A key published within the window is found once the window has passed.
    provider.rotate_key();
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::UNAUTHORIZED,
        "still within the window"
    );
    assert_eq!(provider.jwks_fetches(), 2);
    h.clock.advance_millis(6_000);
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK
    );
    assert_eq!(provider.jwks_fetches(), 3, "11 s later a new fetch happens");
}

#[tokio::test]
async fn when_the_provider_is_down_cached_keys_verify_and_unknown_ones_are_refused() {
    let (h, provider) = setup().await;
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK
    );
    provider.set_available(false);
    h.clock.advance_millis(11_000);

    let fetches = provider.jwks_fetches();
    for _ in 0..3 {
        let (status, me) = whoami(&h, &payments_prod(&h, &provider)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a cached key needs no provider: {me}"
        );
    }
    assert_eq!(provider.jwks_fetches(), fetches);

    // A key the server has never seen cannot be checked: fail closed.
    provider.rotate_key();
    let got = whoami(&h, &payments_prod(&h, &provider)).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be fetched"),
        "{}",
        got.1
    );
    assert_eq!(provider.jwks_fetches(), fetches + 1, "it tried, once");

    // Back up: after the window, the new key is fetched and verifies.
    provider.set_available(true);
    h.clock.advance_millis(11_000);
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn when_the_provider_is_down_before_any_fetch_every_token_is_refused() {
    let (h, provider) = setup().await;
    provider.set_available(false);
    let got = whoami(&h, &payments_prod(&h, &provider)).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    assert_eq!(provider.discovery_fetches(), 1);
    assert_eq!(provider.jwks_fetches(), 0);
}

#[tokio::test]
async fn a_retired_key_stops_verifying_once_the_keys_are_refetched() {
    let (h, provider) = setup().await;
    let old_claims = actions_claims(&h, &provider, "acme/payments", "production");
    let old = provider.sign(&old_claims);
    assert_eq!(whoami(&h, &old).await.0, StatusCode::OK);

    h.clock.advance_millis(11_000);
    provider.rotate_key();
    provider.retire_old_keys();
    // The new key's first token refetches the key set, which no longer has the old key.
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK
    );
    assert_eq!(provider.jwks_fetches(), 2);
    let got = whoami(&h, &old).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);

    // Asking again later does not bring it back.
    h.clock.advance_millis(11_000);
    let got = whoami(&h, &old).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    assert_eq!(provider.jwks_fetches(), 3);
}

/// The scheduled refresh (`serve` runs it every `KEY_REFRESH_INTERVAL`) replaces the cache:
/// a key the issuer withdrew stops verifying even if no token ever asks for a new one, and a
/// refresh that fails keeps the keys it had.
#[tokio::test]
async fn the_scheduled_refresh_drops_withdrawn_keys_and_survives_a_failed_fetch() {
    let (h, provider) = setup().await;
    let old = provider.sign(&actions_claims(
        &h,
        &provider,
        "acme/payments",
        "production",
    ));
    assert_eq!(whoami(&h, &old).await.0, StatusCode::OK);

    provider.set_available(false);
    h.app.warm_oidc_keys().await;
    assert_eq!(
        whoami(&h, &old).await.0,
        StatusCode::OK,
        "a failed refresh keeps the keys"
    );

    provider.set_available(true);
    tokio::task::spawn_blocking({
        let provider = provider.clone();
        move || provider.rotate_key()
    })
    .await
    .unwrap();
    provider.retire_old_keys();
    let fetches = provider.discovery_fetches();
    h.app.warm_oidc_keys().await;
    assert_eq!(
        provider.discovery_fetches(),
        fetches + 1,
        "each refresh discovers the key set's address again"
    );
    let got = whoami(&h, &old).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK,
        "the new key came with the refresh"
    );
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused_and_its_keys_never_used() {
    let (h, provider) = setup().await;
    provider.set_discovery_issuer(Some(
        "https://token.actions.githubusercontent.com".to_owned(),
    ));
    for _ in 0..2 {
        let got = whoami(&h, &payments_prod(&h, &provider)).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
        h.clock.advance_millis(11_000);
    }
    assert_eq!(provider.discovery_fetches(), 2);
    assert_eq!(
        provider.jwks_fetches(),
        0,
        "the lying document's jwks_uri is never followed"
    );

    // Once the document tells the truth, the same provider's tokens verify.
    provider.set_discovery_issuer(None);
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_configured_jwks_url_needs_no_discovery() {
    let provider = FakeProvider::start().await;
    let mut issuer = github_issuer("github", &provider);
    issuer.jwks_url = Some(provider.jwks_url());
    // Discovery would lie; with the address configured it is never asked.
    provider.set_discovery_issuer(Some("https://elsewhere.example".to_owned()));
    let h = Harness::with_app_settings(
        HttpSettings::default(),
        settings(vec![issuer], Duration::from_secs(3)),
    )
    .await;
    assert_eq!(
        whoami(&h, &payments_prod(&h, &provider)).await.0,
        StatusCode::OK
    );
    assert_eq!(provider.discovery_fetches(), 0);
    assert_eq!(provider.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_hanging_provider_ends_in_401_within_the_provider_timeout() {
    let provider = FakeProvider::start().await;
    let h = Harness::with_app_settings(
        HttpSettings::default(),
        settings(
            vec![github_issuer("github", &provider)],
            Duration::from_millis(300),
        ),
    )
    .await;
    provider.set_hanging(true);
    let jwt = payments_prod(&h, &provider);
    let got = tokio::time::timeout(Duration::from_secs(10), whoami(&h, &jwt))
        .await
        .expect("the request ends although the provider never answers");
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    assert_eq!(provider.discovery_fetches(), 1, "it did ask");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_hangs_holds_up_nobody_else() {
    let hanging = FakeProvider::start().await;
    let healthy = FakeProvider::start().await;
    let h = Harness::with_app_settings(
        HttpSettings::default(),
        settings(
            vec![
                github_issuer("hanging", &hanging),
                github_issuer("github", &healthy),
            ],
            Duration::from_secs(2),
        ),
    )
    .await;
    let h = std::sync::Arc::new(h);
    // The healthy issuer's key is cached and its principal known before the hang starts.
    let healthy_jwt = payments_prod(&h, &healthy);
    assert_eq!(whoami(&h, &healthy_jwt).await.0, StatusCode::OK);
    hanging.set_hanging(true);

    let hanging_jwt = payments_prod(&h, &hanging);
    let waiting = {
        let h = std::sync::Arc::clone(&h);
        tokio::spawn(async move { whoami(&h, &hanging_jwt).await })
    };
    // Until the hanging issuer has been asked, the waiting request is not yet waiting on it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while hanging.discovery_fetches() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the hanging issuer is asked");

    let cached = {
        let h = std::sync::Arc::clone(&h);
        tokio::spawn(async move {
            let by_oidc = whoami(&h, &healthy_jwt).await;
            let by_token = whoami(&h, &h.tokens.developer).await;
            (by_oidc, by_token)
        })
    };
    let ((status, me), (token_status, _)) = tokio::time::timeout(Duration::from_secs(10), cached)
        .await
        .expect("the cached issuer's request is not held up")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["authenticatedBy"], "oidc:github");
    assert_eq!(token_status, StatusCode::OK);
    assert!(
        !waiting.is_finished(),
        "the other issuer's request was still waiting on its provider"
    );

    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the hanging request ends at the provider timeout")
        .unwrap();
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_for_an_unknown_kid_does_not_hold_up_the_same_issuers_cached_keys() {
    let provider = FakeProvider::start().await;
    let h = Harness::with_app_settings(
        HttpSettings::default(),
        settings(
            vec![github_issuer("github", &provider)],
            Duration::from_secs(2),
        ),
    )
    .await;
    let h = std::sync::Arc::new(h);
    let cached = payments_prod(&h, &provider);
    assert_eq!(whoami(&h, &cached).await.0, StatusCode::OK);
    assert_eq!(provider.jwks_fetches(), 1);

    // An unknown kid past the refetch window: its fetch hangs, holding the issuer's fetch turn.
    provider.set_hanging(true);
    h.clock.advance_millis(11_000);
    let unknown = with_kid(
        &provider,
        "kid-being-fetched",
        &actions_claims(&h, &provider, "acme/payments", "production"),
    );
    let waiting = {
        let h = std::sync::Arc::clone(&h);
        tokio::spawn(async move { whoami(&h, &unknown).await })
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while provider.jwks_fetches() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the unknown kid refetches");

    // A token under the key already cached verifies without waiting for that fetch.
    let (status, me) = tokio::time::timeout(Duration::from_secs(10), whoami(&h, &cached))
        .await
        .expect("a cached key needs no network");
    assert_eq!(status, StatusCode::OK, "{me}");
    assert!(!waiting.is_finished(), "the fetch was still hanging");

    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the hanging fetch ends at the provider timeout")
        .unwrap();
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
}

#[tokio::test]
async fn a_pipeline_never_approves_but_uses_a_persons_override() {
    let (h, provider) = setup().await;
    // Binding 2 makes any acme repository an oncall-lead, a role that may override a
    // production rollback — a person with it may, a pipeline may not.
    let jwt = provider.sign(&actions_claims(&h, &provider, "acme/web", "production"));
    let body = common::override_body("deploy.rollback", "production", 30);
    let got = h.post("/security-gate/override", &jwt, body.clone()).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("WORKLOAD_CANNOT_APPROVE"),
        None,
    );
    assert!(h.all_overrides().await.is_empty());
    let refused = h.audit("action=override.create&decision=denied").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["principal"], "github:acme/web");
    assert_eq!(refused[0]["details"]["authenticatedBy"], "oidc:github");

    // The person's override is what the pipeline's gated action then uses.
    h.create_override(&h.tokens.oncall, body).await;
    let (status, decision) = h
        .post(
            "/security-gate/check",
            &jwt,
            json!({"action": "deploy.rollback", "environment": "production"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["allowed"], true, "{decision}");
    assert_eq!(decision["reason"], "OVERRIDE");
}
