//! Identity on the request path (SPEC §18): every request authenticates first, so verifying a
//! workload's OIDC token must not call the issuer (its keys are cached by `kid`) and must stay
//! cheap. Measured through `App::authenticate`, as the server calls it, beside a static `ds_`
//! token for comparison:
//!
//! - `authenticate/oidc_jwt_cached_keys`: an RS256 JWT from a [`FakeProvider`] on 127.0.0.1,
//!   its key already cached and its principal already known (signature, issuer, audience, times,
//!   binding);
//! - `authenticate/static_token`: a token made with `App::create_token` (a SQLite read and a
//!   constant-time hash comparison).
//!
//! The setup (not timed) asserts that the provider's JWKS is not fetched again while the
//! iterations run. `cargo bench -p deploy-safety-app --bench identity` measures;
//! `cargo test -p deploy-safety-app --benches` (CI, `scripts/test`) runs each once as a test.

// A benchmark's setup should fail loudly, right there.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use deploy_safety_app::{
    App, AppSettings, AuthMethod, AuthSettings, ManualClock, OidcIssuerSettings,
};
use deploy_safety_core::identity::{Binding, ClaimPattern, PrincipalTemplate};
use deploy_safety_core::{Role, Timestamp};
use deploy_safety_fake_oidc::FakeProvider;
use deploy_safety_store::Store;
use serde_json::json;

/// The app's clock stands still here, so the token stays valid however long the run takes.
const NOW_SECONDS: i64 = 1_767_225_600;

struct Setup {
    runtime: tokio::runtime::Runtime,
    provider: FakeProvider,
    app: App,
    jwt: String,
    static_token: String,
    /// Holds the database.
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (provider, app, jwt, static_token) = runtime.block_on(async {
        let provider = FakeProvider::start().await;
        let store =
            Store::open(&format!("sqlite://{}", dir.path().join("ds.db").display())).unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(
            NOW_SECONDS * 1_000,
        )));
        let settings = AppSettings {
            auth: AuthSettings {
                oidc: vec![OidcIssuerSettings {
                    name: "github".to_owned(),
                    issuer: provider.issuer(),
                    audience: "deploy-safety".to_owned(),
                    jwks_url: None,
                    algorithms: vec![jsonwebtoken::Algorithm::RS256],
                    leeway_seconds: 60,
                    max_token_age_minutes: 60,
                    bindings: vec![Binding {
                        claims: vec![
                            ("repository".to_owned(), ClaimPattern::new("acme/payments")),
                            ("environment".to_owned(), ClaimPattern::new("production")),
                        ],
                        principal: PrincipalTemplate::parse("github:{repository}@{environment}")
                            .unwrap(),
                        role: Role::EngLead,
                    }],
                }],
                ..AuthSettings::default()
            },
            ..AppSettings::default()
        };
        let app = App::new(store, clock, settings);
        app.warm_oidc_keys().await;
        let jwt = provider.sign(&json!({
            "iss": provider.issuer(),
            "aud": "deploy-safety",
            "sub": "repo:acme/payments:environment:production",
            "repository": "acme/payments",
            "environment": "production",
            "ref": "refs/heads/main",
            "iat": NOW_SECONDS,
            "nbf": NOW_SECONDS,
            "exp": NOW_SECONDS + 300,
        }));
        // Once, untimed: the principal is created and remembered, as after a pipeline's first
        // request.
        let caller = app.authenticate(&jwt).await.unwrap();
        assert_eq!(caller.name, "github:acme/payments@production");
        assert!(matches!(caller.auth, AuthMethod::Oidc { .. }));
        let issued = app
            .create_token("bench-static", Role::EngLead, "bench")
            .await
            .unwrap();
        let caller = app.authenticate(&issued.token).await.unwrap();
        assert!(matches!(caller.auth, AuthMethod::Token { .. }));
        (provider, app, jwt, issued.token)
    });
    Setup {
        runtime,
        provider,
        app,
        jwt,
        static_token,
        _dir: dir,
    }
}

/// `iters` authentications of `presented` in one `block_on`, timed inside it, so the runtime's
/// entry is not part of the figure.
fn authenticate_n(setup: &Setup, presented: &str, iters: u64) -> Duration {
    setup.runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let caller = setup.app.authenticate(black_box(presented)).await;
            black_box(caller.unwrap());
        }
        start.elapsed()
    })
}

fn authenticate(c: &mut Criterion) {
    let setup = setup();
    let jwks_before = setup.provider.jwks_fetches();
    let discovery_before = setup.provider.discovery_fetches();
    assert_eq!(
        jwks_before, 1,
        "warming fetched the key set once, and the first token used it"
    );

    let mut group = c.benchmark_group("authenticate");
    group.bench_function("oidc_jwt_cached_keys", |b| {
        b.iter_custom(|iters| authenticate_n(&setup, &setup.jwt, iters));
    });
    group.bench_function("static_token", |b| {
        b.iter_custom(|iters| authenticate_n(&setup, &setup.static_token, iters));
    });
    group.finish();

    let (jwks_after, discovery_after) = (
        setup.provider.jwks_fetches(),
        setup.provider.discovery_fetches(),
    );
    println!(
        "issuer requests during the iterations: JWKS {jwks_before} -> {jwks_after}, discovery {discovery_before} -> {discovery_after}"
    );
    assert_eq!(
        jwks_after, jwks_before,
        "a cached verification must not fetch the key set"
    );
    assert_eq!(
        discovery_after, discovery_before,
        "a cached verification must not read the discovery document"
    );
}

criterion_group!(benches, authenticate);
criterion_main!(benches);
