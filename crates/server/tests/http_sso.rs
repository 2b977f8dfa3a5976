//! Single sign-on for people over HTTP (SPEC §18): the authorization code flow against a real
//! OpenID Connect provider on 127.0.0.1 (`deploy-safety-fake-oidc`), sessions and their
//! lifetimes, CSRF, logout and revocation, and two replicas sharing one database.
//!
//! The router is driven in-process, so the browser's part is played by hand: the test follows
//! `/auth/login`'s redirect to the provider with reqwest (redirects not followed), reads the
//! provider's answer — the redirect URL with `code` and `state` — and hands that query to the
//! router's callback, keeping the session cookie from `Set-Cookie` like a browser's jar would.
//! The provider's ID tokens are dated by its `set_now`, kept equal to the App's `ManualClock`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{API, Harness, Reply, assert_error, override_body, test_checkpoints};
use deploy_safety_app::{App, AppSettings, AuthSettings, Clock, SsoSettings};
use deploy_safety_core::Role;
use deploy_safety_fake_oidc::{FakeProvider, IdTokenTamper};
use deploy_safety_server::HttpSettings;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const CLIENT_ID: &str = "deploy-safety";
const CLIENT_SECRET: &str = "sso-client-secret-5b1e0c7a";
/// Plain http to a loopback address: the one case where the cookie is not `Secure`.
const REDIRECT: &str = "http://127.0.0.1/api/deploy-safety/auth/callback";
const ALICE: &str = "alice@example.com";
const CANARY: &str = "deploy.canary.start";
const WHOAMI: &str = "/api/deploy-safety/auth/whoami";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn sso_settings(provider: &FakeProvider, redirect_url: &str) -> SsoSettings {
    let roles = BTreeMap::from([
        ("devs".to_owned(), Role::Developer),
        ("oncall".to_owned(), Role::OncallLead),
        ("platform-leads".to_owned(), Role::EngLead),
        ("security".to_owned(), Role::SecurityTeam),
    ]);
    SsoSettings {
        issuer: provider.issuer(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        redirect_url: redirect_url.to_owned(),
        scopes: ["openid", "email", "profile", "groups"]
            .map(str::to_owned)
            .to_vec(),
        principal_claim: "email".to_owned(),
        role_claim: "groups".to_owned(),
        roles,
        session_lifetime: Duration::from_secs(12 * 3600),
        session_idle_timeout: Duration::from_secs(3600),
    }
}

fn app_settings(sso: SsoSettings) -> AppSettings {
    AppSettings {
        auth: AuthSettings {
            sso: Some(sso),
            ..AuthSettings::default()
        },
        ..AppSettings::default()
    }
}

fn user(email: &str, groups: &[&str]) -> Value {
    json!({
        "sub": format!("u-{email}"),
        "email": email,
        "name": email.split('@').next().unwrap(),
        "groups": groups,
    })
}

/// A harness whose App signs people in at a fresh provider; the browser's side of the flow.
struct World {
    h: Harness,
    provider: FakeProvider,
    settings: SsoSettings,
    /// The browser's connection to the provider: follows no redirects, as the test does.
    browser: reqwest::Client,
    /// The browser's `ds_login` cookie, set by the last `/auth/login` (sent to the callback).
    login_binding: std::sync::Mutex<Option<String>>,
}

/// A session as a browser holds it.
#[derive(Debug, Clone)]
struct Session {
    /// `ds_session=dss_...`, the `Cookie` header's value.
    cookie: String,
    /// From `GET /auth/whoami`.
    csrf: String,
}

/// One `Set-Cookie`, split.
#[derive(Debug)]
struct SetCookie {
    name: String,
    value: String,
    attributes: Vec<String>,
}

impl SetCookie {
    fn has(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }
}

fn set_cookies(reply: &Reply) -> Vec<SetCookie> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| {
            let mut parts = v.to_str().unwrap().split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            SetCookie {
                name: name.to_owned(),
                value: value.to_owned(),
                attributes: parts.map(str::to_owned).collect(),
            }
        })
        .collect()
}

/// The session cookie a reply sets, if any (at most one).
fn set_cookie(reply: &Reply) -> Option<SetCookie> {
    let mut sessions: Vec<SetCookie> = set_cookies(reply)
        .into_iter()
        .filter(|c| c.name == "ds_session")
        .collect();
    assert!(
        sessions.len() <= 1,
        "one session cookie at most: {sessions:?}"
    );
    sessions.pop()
}

/// The cookie tying a login to its browser, if the reply sets one.
fn login_cookie(reply: &Reply) -> Option<SetCookie> {
    set_cookies(reply)
        .into_iter()
        .find(|c| c.name == "ds_login")
}

fn location(reply: &Reply) -> String {
    reply
        .headers
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("no Location in {reply:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn is_html(reply: &Reply) -> bool {
    reply
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"))
}

/// Sends one request with any headers (a cookie, a CSRF token, a bearer token).
async fn request(
    router: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let response = router
        .clone()
        .oneshot(
            request
                .body(Body::from(body.unwrap_or_default().to_owned()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A request carrying the session cookie, and the CSRF header when given.
async fn with_session(
    router: &Router,
    method: Method,
    path: &str,
    session: &Session,
    csrf: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut headers = vec![("cookie", session.cookie.as_str())];
    if let Some(csrf) = csrf {
        headers.push(("x-csrf-token", csrf));
    }
    request(router, method, path, &headers, body).await
}

async fn whoami(router: &Router, session: &Session) -> Reply {
    with_session(router, Method::GET, WHOAMI, session, None, None).await
}

impl World {
    async fn start() -> World {
        World::start_with(REDIRECT, |_| {}).await
    }

    /// A world whose redirect URL is `redirect_url`, with `adjust` applied to the settings.
    async fn start_with(redirect_url: &str, adjust: impl FnOnce(&mut SsoSettings)) -> World {
        let provider = FakeProvider::start().await;
        provider.register_client(CLIENT_ID, CLIENT_SECRET, redirect_url);
        provider.set_user(user(ALICE, &["devs", "platform-leads"]));
        let mut settings = sso_settings(&provider, redirect_url);
        adjust(&mut settings);
        let h = Harness::with_app_settings(HttpSettings::default(), app_settings(settings.clone()))
            .await;
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        World {
            h,
            provider,
            settings,
            browser,
            login_binding: std::sync::Mutex::new(None),
        }
    }

    /// The provider's clock follows the App's, so its ID tokens are fresh by the App's.
    fn sync_clock(&self) {
        self.provider
            .set_now(self.h.clock.now().unix_millis() / 1000);
    }

    /// `GET /auth/login` on `router`.
    async fn begin(&self, router: &Router, return_to: Option<&str>) -> Reply {
        let path = match return_to {
            Some(r) => format!(
                "{API}/auth/login?returnTo={}",
                form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
            ),
            None => format!("{API}/auth/login"),
        };
        let reply = request(router, Method::GET, &path, &[], None).await;
        if let Some(cookie) = login_cookie(&reply) {
            *self.login_binding.lock().unwrap() = Some(cookie.value);
        }
        reply
    }

    /// The browser at the provider's authorization URL: signs in and is sent back. Returns the
    /// path and query of the redirect back (to hand to the router's callback).
    async fn authorize(&self, authorize_url: &str) -> String {
        self.sync_clock();
        let answer = self.browser.get(authorize_url).send().await.unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::FOUND, "{answer:?}");
        let back = answer.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            back.starts_with(&self.settings.redirect_url),
            "{back} goes back to the redirect URL"
        );
        let url = reqwest::Url::parse(&back).unwrap();
        format!("{}?{}", url.path(), url.query().unwrap_or_default())
    }

    /// The provider's redirect back, followed by the browser that began the login (with its
    /// `ds_login` cookie).
    async fn callback(&self, router: &Router, path_and_query: &str) -> Reply {
        let binding = self.login_binding.lock().unwrap().clone();
        let cookie = binding.map(|b| format!("ds_login={b}"));
        self.callback_with_cookie(router, path_and_query, cookie.as_deref())
            .await
    }

    /// The same redirect followed with exactly this `Cookie` header (or none).
    async fn callback_with_cookie(
        &self,
        router: &Router,
        path_and_query: &str,
        cookie: Option<&str>,
    ) -> Reply {
        self.sync_clock();
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        request(router, Method::GET, path_and_query, &headers, None).await
    }

    /// The whole flow on `router` (login → provider → callback), asserting it signs in.
    async fn login_on(&self, router: &Router) -> Session {
        let started = self.begin(router, None).await;
        assert_eq!(started.status, StatusCode::SEE_OTHER, "{started:?}");
        let back = self.authorize(&location(&started)).await;
        let done = self.callback(router, &back).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
        let cookie = set_cookie(&done).expect("a session cookie");
        let session = Session {
            cookie: format!("{}={}", cookie.name, cookie.value),
            csrf: String::new(),
        };
        let me = whoami(router, &session).await;
        assert_eq!(me.status, StatusCode::OK, "{me:?}");
        Session {
            csrf: me.json()["csrfToken"].as_str().unwrap().to_owned(),
            ..session
        }
    }

    async fn login(&self) -> Session {
        self.login_on(&self.h.router).await
    }

    /// A login whose callback fails: the reply, after asserting it set no cookie and is a page.
    async fn failed_callback(&self, path_and_query: &str) -> Reply {
        let reply = self.callback(&self.h.router, path_and_query).await;
        assert!(set_cookie(&reply).is_none(), "no cookie: {reply:?}");
        assert!(is_html(&reply), "a page for the browser: {reply:?}");
        reply
    }

    async fn sessions(&self) -> Vec<deploy_safety_app::SessionView> {
        self.h.app.list_sessions().await.unwrap()
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

// ---------------------------------------------------------------------------------------------
// Signing in
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_person_signs_in_with_pkce_state_and_nonce_and_gets_a_session() {
    let w = World::start().await;
    let return_to = "/api/deploy-safety/security-gate/status";

    // 1. /auth/login sends the browser to the provider; the login's secrets stay server-side
    //    (the browser holds only the `ds_login` cookie that ties the login to it).
    let started = w.begin(&w.h.router, Some(return_to)).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{started:?}");
    assert!(
        set_cookie(&started).is_none(),
        "no session before the callback"
    );
    assert_eq!(started.headers[header::CACHE_CONTROL], "no-store");
    let authorize_url = location(&started);
    assert!(
        authorize_url.starts_with(&format!("{}/authorize?", w.provider.issuer())),
        "{authorize_url}"
    );
    let param = |name: &str| query_param(&authorize_url, name);
    assert_eq!(param("response_type").as_deref(), Some("code"));
    assert_eq!(param("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(param("redirect_uri").as_deref(), Some(REDIRECT));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    let scopes = param("scope").unwrap();
    let scopes: Vec<&str> = scopes.split(' ').collect();
    for scope in ["openid", "email", "profile", "groups"] {
        assert!(scopes.contains(&scope), "{scope} in {scopes:?}");
    }
    let state = param("state").unwrap();
    let nonce = param("nonce").unwrap();
    let challenge = param("code_challenge").unwrap();
    assert!(state.len() >= 16 && nonce.len() >= 16, "unguessable");
    assert_eq!(challenge.len(), 43, "a base64url SHA-256");
    assert!(
        !authorize_url.contains(CLIENT_SECRET),
        "the secret never goes to the browser"
    );

    // 2. The provider signs the person in and sends them back with a code and the state.
    let back = w.authorize(&authorize_url).await;
    let recorded = w.provider.authorize_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].code_challenge.as_deref(),
        Some(challenge.as_str())
    );
    assert_eq!(recorded[0].nonce.as_deref(), Some(nonce.as_str()));
    let callback_url = format!("http://127.0.0.1{back}");
    assert_eq!(
        query_param(&callback_url, "state").as_deref(),
        Some(state.as_str())
    );
    let code = query_param(&callback_url, "code").unwrap();

    // 3. The callback redeems the code with the PKCE verifier and the client's secret.
    let done = w.callback(&w.h.router, &back).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    assert_eq!(location(&done), return_to);
    let requests = w.provider.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let exchange = &requests[0];
    assert_eq!(exchange.grant_type, "authorization_code");
    assert_eq!(exchange.code, code);
    assert_eq!(exchange.redirect_uri, REDIRECT);
    assert_eq!(exchange.client_id, CLIENT_ID);
    assert!(
        exchange.client_authenticated,
        "the client proved its secret"
    );
    let verifier = exchange.code_verifier.as_deref().unwrap();
    assert!((43..=128).contains(&verifier.len()), "{verifier}");
    // The provider answers `ok` only when SHA-256(verifier) is the challenge it was shown.
    assert_eq!(exchange.outcome, "ok");

    let cookie = set_cookie(&done).unwrap();
    assert_eq!(cookie.name, "ds_session");
    assert!(cookie.value.starts_with("dss_"), "{cookie:?}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(cookie.has(attribute), "{attribute} in {cookie:?}");
    }
    assert!(
        !cookie.has("Secure"),
        "plain http to 127.0.0.1: a browser would not send a Secure cookie back"
    );

    // 4. The cookie is the person.
    let session = Session {
        cookie: format!("ds_session={}", cookie.value),
        csrf: String::new(),
    };
    let me = whoami(&w.h.router, &session).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    let me = me.json();
    assert_eq!(me["authenticatedBy"], "sso");
    assert_eq!(me["principal"], ALICE);
    assert_eq!(
        me["role"], "eng-lead",
        "devs + platform-leads: the higher wins"
    );
    let csrf = me["csrfToken"].as_str().unwrap();
    assert!(csrf.len() >= 16, "{me}");
    assert!(me.get("tokenId").is_none_or(Value::is_null), "{me}");

    let sessions = w.sessions().await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].principal, ALICE);
    assert_eq!(sessions[0].role, Role::EngLead);
    assert!(
        cookie.value.contains(&sessions[0].id),
        "the cookie names the session"
    );

    let logins = w.h.audit("action=auth.login").await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0]["principal"], ALICE);
    assert_eq!(logins[0]["role"], "eng-lead");
    assert_eq!(logins[0]["decision"], "allowed");
    assert_eq!(logins[0]["details"]["authenticatedBy"], "sso");
    assert_eq!(logins[0]["details"]["sessionId"], sessions[0].id);
    let created =
        w.h.audit("action=principal.create&principal=alice%40example.com")
            .await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["details"]["authenticatedBy"], "sso");

    // Nothing that proves the session is written down.
    let log = serde_json::to_string(&w.h.audit("limit=1000").await).unwrap();
    let secret = cookie.value.rsplit('.').next().unwrap();
    assert!(
        !log.contains(secret),
        "the session secret is in the audit log"
    );
    assert!(!log.contains(csrf), "the CSRF token is in the audit log");
}

#[tokio::test]
async fn after_sign_in_the_browser_goes_where_it_began_and_never_to_another_site() {
    let w = World::start().await;
    // Without a (local) `returnTo`, a person lands on the dashboard.
    let home = "/ui/";
    let cases = [
        (None, home),
        (
            Some("/api/deploy-safety/canaries?env=production"),
            "/api/deploy-safety/canaries?env=production",
        ),
        (Some("/ui/canaries"), "/ui/canaries"),
        (Some("https://evil.example/steal"), home),
        (Some("//evil.example/steal"), home),
    ];
    for (return_to, expected) in cases {
        let started = w.begin(&w.h.router, return_to).await;
        let back = w.authorize(&location(&started)).await;
        let done = w.callback(&w.h.router, &back).await;
        assert_eq!(
            done.status,
            StatusCode::SEE_OTHER,
            "{return_to:?}: {done:?}"
        );
        assert_eq!(location(&done), expected, "{return_to:?}");
    }
}

#[tokio::test]
async fn a_persons_role_is_the_highest_their_groups_map_to() {
    let w = World::start().await;
    let cases: &[(&str, &[&str], &str)] = &[
        ("dev@example.com", &["devs"], "developer"),
        ("lead@example.com", &["devs", "platform-leads"], "eng-lead"),
        (
            "pager@example.com",
            &["oncall", "devs", "unmapped"],
            "oncall-lead",
        ),
        (
            "sec@example.com",
            &["platform-leads", "security", "devs"],
            "security-team",
        ),
    ];
    for (email, groups, role) in cases {
        w.provider.set_user(user(email, groups));
        let session = w.login().await;
        let me = whoami(&w.h.router, &session).await.json();
        assert_eq!(me["principal"], *email);
        assert_eq!(me["role"], *role, "{groups:?}");
    }
}

#[tokio::test]
async fn a_cookie_is_secure_unless_the_server_is_plain_http_on_loopback() {
    let redirect = "https://deploy-safety.example.com/api/deploy-safety/auth/callback";
    let w = World::start_with(redirect, |_| {}).await;
    let started = w.begin(&w.h.router, None).await;
    assert_eq!(
        query_param(&location(&started), "redirect_uri").as_deref(),
        Some(redirect)
    );
    let back = w.authorize(&location(&started)).await;
    let done = w.callback(&w.h.router, &back).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    let cookie = set_cookie(&done).unwrap();
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.has(attribute), "{attribute} in {cookie:?}");
    }

    let session = Session {
        cookie: format!("ds_session={}", cookie.value),
        csrf: String::new(),
    };
    let csrf = whoami(&w.h.router, &session).await.json()["csrfToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = with_session(
        &w.h.router,
        Method::POST,
        &format!("{API}/auth/logout"),
        &session,
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{out:?}");
    assert!(
        set_cookie(&out).unwrap().has("Secure"),
        "the clearing cookie too"
    );
}

// ---------------------------------------------------------------------------------------------
// Callbacks that start nothing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_state_is_single_use_and_unknown_or_expired_states_are_refused() {
    let w = World::start().await;

    // Replay: the same callback twice.
    let started = w.begin(&w.h.router, None).await;
    let back = w.authorize(&location(&started)).await;
    let first = w.callback(&w.h.router, &back).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    let log_before = w.h.audit("limit=1000").await;
    let replay = w.failed_callback(&back).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{replay:?}");
    assert!(
        replay.text.contains("unknown or was used"),
        "{}",
        replay.text
    );
    assert_eq!(w.sessions().await.len(), 1, "no second session");
    assert_eq!(
        w.provider.token_requests().len(),
        1,
        "a replayed state is refused before its code is presented"
    );

    // A state this server never issued, and none at all.
    let made_up = w
        .failed_callback(&format!("{API}/auth/callback?code=abc&state=made-up-state"))
        .await;
    assert_eq!(made_up.status, StatusCode::BAD_REQUEST, "{made_up:?}");
    let none = w
        .failed_callback(&format!("{API}/auth/callback?code=abc"))
        .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST, "{none:?}");
    // A callback that names no login in progress needs no credential at all: it is refused
    // and logged, but not recorded, so that anyone on the network cannot grow the audit log
    // (as a 401 is not recorded).
    assert_eq!(
        w.h.audit("limit=1000").await,
        log_before,
        "callbacks naming no login in progress write no audit entry"
    );

    // Expired: the person took 11 minutes at the provider.
    let started = w.begin(&w.h.router, None).await;
    w.h.clock.advance_minutes(11);
    let back = w.authorize(&location(&started)).await;
    let late = w.failed_callback(&back).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST, "{late:?}");
    assert!(late.text.contains("10 minutes"), "{}", late.text);

    // The provider refused (the person declined): the state is used up with it.
    let started = w.begin(&w.h.router, None).await;
    let state = query_param(&location(&started), "state").unwrap();
    let refused = w
        .failed_callback(&format!(
            "{API}/auth/callback?error=access_denied&error_description=declined&state={state}"
        ))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(refused.text.contains("access_denied"), "{}", refused.text);

    // Neither had an identity the provider vouched for (anyone can start a login and send
    // such a callback): refused and logged, not recorded.
    assert_eq!(w.sessions().await.len(), 1);
    assert!(w.h.audit("action=auth.login.failed").await.is_empty());
    assert_eq!(w.h.audit("action=auth.login").await.len(), 1);
}

/// Login CSRF: someone begins a login, signs in at the provider as themselves, and sends the
/// callback URL to a victim. The victim's browser does not hold the `ds_login` cookie that
/// began the login, so no session starts, and the state is spent.
#[tokio::test]
async fn a_callback_from_another_browser_starts_no_session() {
    let w = World::start().await;
    let started = w.begin(&w.h.router, None).await;
    let binding = login_cookie(&started).expect("a ds_login cookie");
    assert!(binding.value.len() >= 43, "256 random bits");
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/api/deploy-safety/auth",
        "Max-Age=600",
    ] {
        assert!(binding.has(attribute), "{attribute}: {binding:?}");
    }
    let back = w.authorize(&location(&started)).await;
    for cookie in [
        None,
        Some("ds_login=someone-elses"),
        Some("ds_session=dss_x.y"),
    ] {
        let reply = w.callback_with_cookie(&w.h.router, &back, cookie).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{cookie:?}: {reply:?}"
        );
        assert!(set_cookie(&reply).is_none(), "no session: {reply:?}");
    }
    assert!(w.sessions().await.is_empty());
    // The right browser comes too late: the first attempt spent the state.
    let reply = w.callback(&w.h.router, &back).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert!(w.sessions().await.is_empty());
    // Every callback clears the binding cookie.
    let cleared = login_cookie(&reply).expect("a clearing ds_login cookie");
    assert!(
        cleared.value.is_empty() && cleared.has("Max-Age=0"),
        "{cleared:?}"
    );
}

#[tokio::test]
async fn an_id_token_that_fails_any_check_starts_no_session() {
    let w = World::start().await;
    let tampers = [
        IdTokenTamper::WrongNonce,
        IdTokenTamper::MissingNonce,
        IdTokenTamper::WrongAudience,
        IdTokenTamper::WrongIssuer,
        IdTokenTamper::Expired,
        IdTokenTamper::ForeignSignature,
    ];
    for tamper in tampers {
        let started = w.begin(&w.h.router, None).await;
        let back = w.authorize(&location(&started)).await;
        w.provider.tamper_next_id_token(tamper);
        let reply = w.failed_callback(&back).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{tamper:?}: {reply:?}"
        );
        assert!(
            reply.text.contains("Sign-in failed"),
            "{tamper:?}: {}",
            reply.text
        );
        assert!(
            reply.text.contains("ID token"),
            "{tamper:?}: {}",
            reply.text
        );
        assert_eq!(
            w.provider.token_requests().last().unwrap().outcome,
            "ok",
            "{tamper:?}: the provider issued the (spoiled) token"
        );
    }
    assert!(w.sessions().await.is_empty());
    let failed = w.h.audit("action=auth.login.failed").await;
    assert_eq!(failed.len(), tampers.len(), "{failed:?}");
    for entry in &failed {
        assert_eq!(entry["reason"], "LOGIN_FAILED");
        assert_eq!(
            entry["principal"], "unknown",
            "an unverified token names nobody"
        );
    }
    assert!(w.h.audit("action=auth.login").await.is_empty());

    // The provider's next honest token signs in.
    w.login().await;
}

#[tokio::test]
async fn a_person_whose_groups_map_to_no_role_gets_403_and_no_session() {
    let w = World::start().await;
    let cases: &[(&str, Value)] = &[
        ("mallory@example.com", json!(["marketing", "sales"])),
        ("nobody@example.com", json!([])),
    ];
    for (email, groups) in cases {
        w.provider
            .set_user(json!({"sub": email, "email": email, "groups": groups}));
        let started = w.begin(&w.h.router, None).await;
        let back = w.authorize(&location(&started)).await;
        let reply = w.failed_callback(&back).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
        assert!(reply.text.contains("no access"), "{}", reply.text);
        assert!(reply.text.contains("maps to a role"), "{}", reply.text);
    }
    assert!(w.sessions().await.is_empty());
    let failed = w.h.audit("action=auth.login.failed").await;
    let summary: Vec<(&str, &str)> = failed
        .iter()
        .map(|e| {
            (
                e["principal"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("nobody@example.com", "NO_ROLE_MAPPING"),
            ("mallory@example.com", "NO_ROLE_MAPPING"),
        ]
    );
    assert_eq!(
        failed[1]["details"]["groups"],
        json!(["marketing", "sales"])
    );
    assert!(
        w.h.audit("action=principal.create&principal=mallory%40example.com")
            .await
            .is_empty(),
        "no principal for someone without a role"
    );
}

#[tokio::test]
async fn without_single_sign_on_configured_the_auth_pages_are_404() {
    let h = Harness::new().await;
    for path in [
        format!("{API}/auth/login"),
        format!("{API}/auth/login?returnTo=/x"),
        format!("{API}/auth/callback?code=a&state=b"),
    ] {
        let reply = request(&h.router, Method::GET, &path, &[], None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}: {reply:?}");
        assert!(is_html(&reply), "{path}: {reply:?}");
        assert!(reply.text.contains("not configured"), "{}", reply.text);
    }
    // A cookie means nothing there.
    let reply = request(
        &h.router,
        Method::GET,
        WHOAMI,
        &[("cookie", "ds_session=dss_abc.def")],
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
}

// ---------------------------------------------------------------------------------------------
// CSRF
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_cookie_changes_state_only_with_the_sessions_csrf_token() {
    let w = World::start().await;
    let alice = w.login().await;
    w.provider
        .set_user(user("bob@example.com", &["platform-leads"]));
    let bob = w.login().await;
    assert_ne!(alice.csrf, bob.csrf);
    let router = &w.h.router;
    let path = format!("{API}/security-gate/override");
    let body = override_body(CANARY, "production", 60).to_string();

    for (csrf, why) in [
        (None, "no X-CSRF-Token"),
        (Some(""), "an empty one"),
        (Some("not-the-token"), "a wrong one"),
        (Some(bob.csrf.as_str()), "another session's"),
    ] {
        let reply = with_session(router, Method::POST, &path, &alice, csrf, Some(&body)).await;
        assert_error(
            &(reply.status, reply.json()),
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("CSRF"),
            None,
        );
        assert!(
            w.h.all_overrides().await.is_empty(),
            "{why}: nothing changed"
        );
    }

    // With the token: the request is what it always was.
    let reply = with_session(
        router,
        Method::POST,
        &path,
        &alice,
        Some(&alice.csrf),
        Some(&body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let created = reply.json();
    assert_eq!(created["approver"], ALICE, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let entries = w.h.audit("action=override.create").await;
    assert_eq!(entries[0]["principal"], ALICE);
    assert_eq!(entries[0]["details"]["authenticatedBy"], "sso");

    // Reading needs no token.
    let reply = with_session(
        router,
        Method::GET,
        &format!("{API}/security-gate/overrides"),
        &alice,
        None,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");

    // DELETE changes state too.
    let one = format!("{API}/security-gate/override/{id}");
    let reply = with_session(router, Method::DELETE, &one, &alice, None, None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.json()["error"]["reason"], "CSRF");
    let reply = with_session(
        router,
        Method::DELETE,
        &one,
        &alice,
        Some(&alice.csrf),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");

    // A bearer token is not sent by a browser on its own: no CSRF token needed, even with a
    // session cookie beside it (the token is who calls).
    let bearer = format!("Bearer {}", w.h.tokens.eng_lead);
    for headers in [
        vec![("authorization", bearer.as_str())],
        vec![
            ("authorization", bearer.as_str()),
            ("cookie", alice.cookie.as_str()),
        ],
    ] {
        let reply = request(router, Method::POST, &path, &headers, Some(&body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        assert_eq!(reply.json()["approver"], "eng-lead");
    }
}

// ---------------------------------------------------------------------------------------------
// Logout, lifetimes, revocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let w = World::start().await;
    let session = w.login().await;
    let router = &w.h.router;
    let logout = format!("{API}/auth/logout");

    let reply = with_session(router, Method::POST, &logout, &session, None, None).await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "a logout needs the CSRF token too"
    );
    assert_eq!(reply.json()["error"]["reason"], "CSRF");
    assert_eq!(
        whoami(router, &session).await.status,
        StatusCode::OK,
        "still signed in"
    );

    let reply = with_session(
        router,
        Method::POST,
        &logout,
        &session,
        Some(&session.csrf),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    let cleared = set_cookie(&reply).expect("a clearing cookie");
    assert_eq!(cleared.name, "ds_session");
    assert_eq!(cleared.value, "");
    assert!(
        cleared.has("Max-Age=0") && cleared.has("Path=/"),
        "{cleared:?}"
    );

    let reply = whoami(router, &session).await;
    assert_error(
        &(reply.status, reply.json()),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
        None,
    );
    let sessions = w.sessions().await;
    assert!(sessions[0].revoked_at.is_some());
    assert_eq!(sessions[0].revoked_by.as_deref(), Some(ALICE));

    let entries = w.h.audit("action=auth.logout").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["principal"], ALICE);
    assert_eq!(entries[0]["decision"], "recorded");
    assert_eq!(entries[0]["details"]["authenticatedBy"], "sso");
    assert_eq!(entries[0]["details"]["sessionId"], sessions[0].id);

    // A static token is no session: it is revoked otherwise.
    let got =
        w.h.call(
            Method::POST,
            "/auth/logout",
            Some(&w.h.tokens.developer),
            None,
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request", None, None);
    let got = w.h.call(Method::POST, "/auth/logout", None, None).await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED);
    assert_eq!(w.h.audit("action=auth.logout").await.len(), 1);
}

#[tokio::test]
async fn an_idle_session_ends_and_activity_keeps_it_alive() {
    let w = World::start().await;
    let router = &w.h.router;

    // Used within the hour, again and again: alive well past one hour.
    let session = w.login().await;
    for step in 1..=6 {
        w.h.clock.advance_minutes(30);
        assert_eq!(
            whoami(router, &session).await.status,
            StatusCode::OK,
            "after {} minutes of activity",
            step * 30
        );
    }
    w.h.clock.advance_minutes(59);
    assert_eq!(
        whoami(router, &session).await.status,
        StatusCode::OK,
        "idle 59 minutes"
    );

    // Idle for more than the hour: gone, and staying gone.
    w.h.clock.advance_minutes(61);
    assert_eq!(
        whoami(router, &session).await.status,
        StatusCode::UNAUTHORIZED
    );
    w.h.clock.advance_minutes(1);
    assert_eq!(
        whoami(router, &session).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_active() {
    let w = World::start_with(REDIRECT, |s| {
        s.session_lifetime = Duration::from_secs(4 * 3600);
    })
    .await;
    let router = &w.h.router;
    let session = w.login().await;
    for _ in 0..7 {
        w.h.clock.advance_minutes(30);
        assert_eq!(whoami(router, &session).await.status, StatusCode::OK);
    }
    w.h.clock.advance_minutes(29);
    assert_eq!(
        whoami(router, &session).await.status,
        StatusCode::OK,
        "3 h 59 min"
    );
    w.h.clock.advance_minutes(1);
    let reply = whoami(router, &session).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "4 h: {reply:?}");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/auth/login")
    );
}

#[tokio::test]
async fn a_revoked_session_stops_working_at_once() {
    let w = World::start().await;
    let router = &w.h.router;
    let alice = w.login().await;
    w.provider.set_user(user("bob@example.com", &["devs"]));
    let bob = w.login().await;
    let bob_again = w.login().await;

    let id = w
        .sessions()
        .await
        .into_iter()
        .find(|s| s.principal == ALICE)
        .unwrap()
        .id;
    w.h.clock.advance_minutes(5);
    let revoked =
        w.h.app
            .revoke_sessions(Some(&id), None, "cli:test")
            .await
            .unwrap();
    assert_eq!(revoked, std::slice::from_ref(&id));
    assert_eq!(
        whoami(router, &alice).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        whoami(router, &bob).await.status,
        StatusCode::OK,
        "only that one"
    );

    let view = w.sessions().await.into_iter().find(|s| s.id == id).unwrap();
    assert_eq!(view.revoked_at, Some(w.h.clock.now()));
    assert_eq!(view.revoked_by.as_deref(), Some("cli:test"));
    assert!(
        w.h.app
            .revoke_sessions(Some(&id), None, "cli:test")
            .await
            .is_err(),
        "already revoked"
    );

    // Every session of a principal at once.
    let revoked =
        w.h.app
            .revoke_sessions(None, Some("bob@example.com"), "cli:test")
            .await
            .unwrap();
    assert_eq!(revoked.len(), 2);
    for session in [&bob, &bob_again] {
        assert_eq!(
            whoami(router, session).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let entries = w.h.audit("action=session.revoke").await;
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e["principal"] == "cli:test"));
}

#[tokio::test]
async fn a_forged_or_mangled_cookie_is_401() {
    let w = World::start().await;
    let real = w.login().await;
    let id_part = real.cookie.split_once('.').unwrap().0.to_owned();
    for cookie in [
        format!("{id_part}.wrong-secret"),
        "ds_session=dss_nosuchid.secret".to_owned(),
        "ds_session=garbage".to_owned(),
        "ds_session=ds_abc.def".to_owned(),
        format!("{}x", real.cookie),
    ] {
        let session = Session {
            cookie: cookie.clone(),
            csrf: String::new(),
        };
        let reply = whoami(&w.h.router, &session).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{cookie}: {reply:?}"
        );
    }
    // The real one beside another cookie is still found.
    let session = Session {
        cookie: format!("theme=dark; {}", real.cookie),
        csrf: String::new(),
    };
    assert_eq!(whoami(&w.h.router, &session).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Two replicas
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_login_begun_on_one_replica_completes_on_another() {
    let w = World::start().await;
    let replica_a = w.h.router.clone();
    // Replica B: its own App and router on the same database, with the same settings.
    let url = w.h.db.url();
    let store = std::thread::spawn(move || deploy_safety_store::Store::open(&url))
        .join()
        .unwrap()
        .unwrap();
    let mut settings = app_settings(w.settings.clone());
    settings.checkpoints = Some(test_checkpoints());
    settings.replica = "replica-b".to_owned();
    let app_b = App::new(store, w.h.clock.clone(), settings);
    let replica_b = deploy_safety_server::router(app_b.clone(), &HttpSettings::default());

    let started = w.begin(&replica_a, Some("/api/deploy-safety/health")).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{started:?}");
    let back = w.authorize(&location(&started)).await;
    let done = w.callback(&replica_b, &back).await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "B completes A's login: {done:?}"
    );
    assert_eq!(location(&done), "/api/deploy-safety/health", "A's returnTo");
    let cookie = set_cookie(&done).unwrap();
    let session = Session {
        cookie: format!("ds_session={}", cookie.value),
        csrf: String::new(),
    };

    // The session B made is good on A, with the same CSRF token.
    let on_a = whoami(&replica_a, &session).await;
    let on_b = whoami(&replica_b, &session).await;
    assert_eq!(on_a.status, StatusCode::OK, "{on_a:?}");
    assert_eq!(on_b.status, StatusCode::OK, "{on_b:?}");
    assert_eq!(on_a.json()["principal"], ALICE);
    assert_eq!(on_a.json()["csrfToken"], on_b.json()["csrfToken"]);

    // The state B used is used for A as well: refused before the code is presented again.
    let exchanges = w.provider.token_requests().len();
    let replay = w.callback(&replica_a, &back).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{replay:?}");
    assert!(
        replay.text.contains("unknown or was used"),
        "{}",
        replay.text
    );
    assert!(set_cookie(&replay).is_none());
    assert_eq!(w.provider.token_requests().len(), exchanges);

    // A logout on A ends the session on B.
    let session = Session {
        csrf: on_a.json()["csrfToken"].as_str().unwrap().to_owned(),
        ..session
    };
    let out = with_session(
        &replica_a,
        Method::POST,
        &format!("{API}/auth/logout"),
        &session,
        Some(&session.csrf),
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{out:?}");
    assert_eq!(
        whoami(&replica_b, &session).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app_b.list_sessions().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_state_presented_to_two_replicas_at_once_makes_one_session() {
    let w = World::start().await;
    let url = w.h.db.url();
    let store = std::thread::spawn(move || deploy_safety_store::Store::open(&url))
        .join()
        .unwrap()
        .unwrap();
    let app_b = App::new(store, w.h.clock.clone(), app_settings(w.settings.clone()));
    let replica_b = deploy_safety_server::router(app_b, &HttpSettings::default());

    for _ in 0..3 {
        let started = w.begin(&w.h.router, None).await;
        let back = w.authorize(&location(&started)).await;
        let exchanges = w.provider.token_requests().len();
        let (a, b) = tokio::join!(
            w.callback(&w.h.router, &back),
            w.callback(&replica_b, &back)
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::SEE_OTHER, StatusCode::BAD_REQUEST],
            "exactly one wins: {a:?} {b:?}"
        );
        let cookies = [set_cookie(&a), set_cookie(&b)];
        assert_eq!(cookies.iter().filter(|c| c.is_some()).count(), 1);
        // The loser is stopped by the state, not by the provider's single-use code.
        assert_eq!(
            w.provider.token_requests().len(),
            exchanges + 1,
            "only the winner presents the code"
        );
        let loser = if a.status == StatusCode::BAD_REQUEST {
            &a
        } else {
            &b
        };
        assert!(loser.text.contains("unknown or was used"), "{}", loser.text);
    }
    assert_eq!(w.sessions().await.len(), 3);
    assert_eq!(w.h.audit("action=auth.login").await.len(), 3);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_503_page_and_static_tokens_keep_working() {
    let w = World::start_with(REDIRECT, |_| {}).await;
    w.provider.set_available(false);
    let reply = w.begin(&w.h.router, None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert!(is_html(&reply), "{reply:?}");
    assert!(set_cookie(&reply).is_none());
    let (status, _) = w.h.get("/auth/whoami", &w.h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);

    w.provider.set_available(true);
    w.login().await;
}

#[tokio::test]
async fn a_provider_that_rotates_its_signing_key_still_signs_people_in() {
    let w = World::start().await;
    w.login().await;
    // The next ID token is signed with a key the App has never seen; the one it knew is gone.
    tokio::task::spawn_blocking({
        let provider = w.provider.clone();
        move || provider.rotate_key()
    })
    .await
    .unwrap();
    w.provider.retire_old_keys();
    let session = w.login().await;
    assert_eq!(whoami(&w.h.router, &session).await.status, StatusCode::OK);
    assert_eq!(w.sessions().await.len(), 2);
    assert!(w.h.audit("action=auth.login.failed").await.is_empty());
}

#[tokio::test]
async fn a_person_named_like_an_existing_principal_with_another_role_is_refused() {
    let w = World::start().await;
    // `eng-lead` is a static token's principal, role eng-lead; this person would be a developer.
    w.provider
        .set_user(json!({"sub": "u-imposter", "email": "eng-lead", "groups": ["devs"]}));
    let started = w.begin(&w.h.router, None).await;
    let back = w.authorize(&location(&started)).await;
    let reply = w.failed_callback(&back).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert!(reply.text.contains("eng-lead"), "{}", reply.text);
    assert!(w.sessions().await.is_empty());

    // A failed login like any other, with its own reason.
    let refused = w.h.audit("action=auth.login.failed").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["reason"], "PRINCIPAL_ROLE_CONFLICT");
    assert_eq!(refused[0]["principal"], "eng-lead");
    assert_eq!(refused[0]["details"]["authenticatedBy"], "sso");
    assert!(w.h.audit("action=auth.login").await.is_empty());
}

#[tokio::test]
async fn an_id_token_without_the_principal_claim_starts_no_session() {
    let w = World::start().await;
    w.provider
        .set_user(json!({"sub": "u-anon", "groups": ["platform-leads"]}));
    let started = w.begin(&w.h.router, None).await;
    let back = w.authorize(&location(&started)).await;
    let reply = w.failed_callback(&back).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert!(
        reply.text.contains("email"),
        "names the claim: {}",
        reply.text
    );
    assert!(w.sessions().await.is_empty());
    let failed = w.h.audit("action=auth.login.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["reason"], "LOGIN_FAILED");
}

/// An address the provider says it has not verified names nobody for sure; one it does not
/// comment on is taken as it is (many providers send no `email_verified`).
#[tokio::test]
async fn an_unverified_email_starts_no_session() {
    let w = World::start().await;
    w.provider.set_user(json!({
        "sub": "u-unverified", "email": "mallory@example.com", "email_verified": false,
        "groups": ["platform-leads"]
    }));
    let started = w.begin(&w.h.router, None).await;
    let back = w.authorize(&location(&started)).await;
    let reply = w.failed_callback(&back).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert!(reply.text.contains("not verified"), "{}", reply.text);
    assert!(w.sessions().await.is_empty());
    let failed = w.h.audit("action=auth.login.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["principal"], "mallory@example.com");

    w.provider.set_user(json!({
        "sub": "u-verified", "email": "alice@example.com", "email_verified": true,
        "groups": ["platform-leads"]
    }));
    let session = w.login().await;
    assert_eq!(whoami(&w.h.router, &session).await.status, StatusCode::OK);
}

/// Deploy engines' endpoints take a bearer token. A session cookie there would let a
/// cross-site link (a top-level GET carries a `SameSite=Lax` cookie) record a decision in the
/// signed-in person's name.
#[tokio::test]
async fn a_session_cookie_does_not_reach_the_deploy_engines_endpoints() {
    let w = World::start().await;
    let session = w.login().await;
    let before = w.h.audit("limit=1000").await.len();
    let path = format!(
        "{API}/integrations/decision?action=deploy.canary.start&environment=staging&releaseId=v1"
    );
    let reply = with_session(&w.h.router, Method::GET, &path, &session, None, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert!(reply.text.contains("bearer token"), "{}", reply.text);
    assert_eq!(
        w.h.audit("limit=1000").await.len(),
        before,
        "nothing recorded"
    );
    // Elsewhere the same session reads as usual.
    assert_eq!(whoami(&w.h.router, &session).await.status, StatusCode::OK);
}
