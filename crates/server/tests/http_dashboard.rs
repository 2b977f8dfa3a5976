//! The web dashboard over HTTP (SPEC §21), in-process: its security headers and the absence of
//! anything its Content-Security-Policy would block, the token sign-in and its session cookie,
//! CSRF on the API for cookie-authenticated requests, session lifetimes on the manual clock,
//! revocation and sign-out, and pages that show the gate's state, escaped.
//!
//! The browser is played by hand: each request carries the headers a browser would send
//! (`Host`, `Cookie`, `Origin`, `Sec-Fetch-Site`, `X-CSRF-Token`), and the session cookie is
//! read from `Set-Cookie` as a browser's jar would.
//!
//! Runs on SQLite, and on PostgreSQL with `DEPLOY_SAFETY_TEST_BACKEND=postgres`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{API, Harness, Reply, START, override_body};
use deploy_safety_app::{AppSettings, AuthSettings, Clock, OidcIssuerSettings, SsoSettings};
use deploy_safety_core::identity::{Binding, ClaimPattern, PrincipalTemplate};
use deploy_safety_core::{Action, Timestamp};
use deploy_safety_core::{ApprovalPolicy, ApprovalRule, EnvironmentSelector, Environments, Role};
use deploy_safety_fake_oidc::FakeProvider;
use deploy_safety_server::HttpSettings;
use http_body_util::BodyExt;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower::ServiceExt;

/// What a browser on the same machine sends as `Host` (plain http, loopback).
const LOOPBACK: &str = "127.0.0.1:8080";
const WHOAMI: &str = "/api/deploy-safety/auth/whoami";
const LOGOUT: &str = "/api/deploy-safety/auth/logout";
const MODE: &str = "/api/deploy-safety/security-gate/mode";
/// The audit action of `POST /security-gate/mode` (crates/app/src/gate.rs).
const MODE_ACTION: &str = "security-gate.mode.set";
const FORM: &str = "application/x-www-form-urlencoded";

/// Every page of the navigation.
const PAGES: [&str; 8] = [
    "/ui/",
    "/ui/canaries",
    "/ui/overrides",
    "/ui/incidents",
    "/ui/freezes",
    "/ui/rollbacks",
    "/ui/checks",
    "/ui/audit",
];

// ---------------------------------------------------------------------------------------------
// A browser's requests
// ---------------------------------------------------------------------------------------------

/// Sends one request with any headers; `body` is `(content type, bytes)`.
async fn request(
    h: &Harness,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some((content_type, bytes)) => {
            builder = builder.header(header::CONTENT_TYPE, content_type);
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    let response = h
        .router
        .clone()
        .oneshot(builder.body(body).unwrap())
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

/// A session as the browser holds it.
#[derive(Debug, Clone)]
struct Session {
    /// `ds_session=dss_…`, the `Cookie` header's value.
    cookie: String,
    /// From `GET /auth/whoami`.
    csrf: String,
}

impl Session {
    /// `GET path` with the cookie, from the loopback browser.
    async fn get(&self, h: &Harness, path: &str) -> Reply {
        request(
            h,
            Method::GET,
            path,
            &[("host", LOOPBACK), ("cookie", &self.cookie)],
            None,
        )
        .await
    }

    /// A JSON request with the cookie and `csrf` as `X-CSRF-Token` (none when `None`).
    async fn send(
        &self,
        h: &Harness,
        method: Method,
        path: &str,
        csrf: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut headers = vec![("host", LOOPBACK), ("cookie", self.cookie.as_str())];
        if let Some(csrf) = csrf {
            headers.push(("x-csrf-token", csrf));
        }
        request(
            h,
            method,
            path,
            &headers,
            body.map(|b| ("application/json", b.to_string())),
        )
        .await
    }

    /// As the dashboard's script sends an action: with the session's CSRF token.
    async fn act(&self, h: &Harness, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(h, method, path, Some(&self.csrf), body).await
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// `POST /ui/sign-in` as the sign-in form sends it, with `headers` beside the form's type.
async fn post_sign_in(h: &Harness, headers: &[(&str, &str)], pairs: &[(&str, &str)]) -> Reply {
    request(
        h,
        Method::POST,
        "/ui/sign-in",
        headers,
        Some((FORM, form(pairs))),
    )
    .await
}

/// Signs in with `token` from the loopback browser, asserting the redirect and the cookie;
/// the session with its CSRF token (from whoami).
async fn sign_in(h: &Harness, token: &str) -> Session {
    let reply = post_sign_in(
        h,
        &[("host", LOOPBACK)],
        &[("token", token), ("returnTo", "/ui/")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    let cookie = session_cookie(&reply).unwrap_or_else(|| panic!("no cookie in {reply:?}"));
    assert!(cookie.value.starts_with("dss_"), "{cookie:?}");
    let cookie = format!("ds_session={}", cookie.value);
    let me = request(
        h,
        Method::GET,
        WHOAMI,
        &[("host", LOOPBACK), ("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    let csrf = me.json()["csrfToken"].as_str().unwrap().to_owned();
    Session { cookie, csrf }
}

/// One `Set-Cookie`, split.
#[derive(Debug)]
struct SetCookie {
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

/// The `ds_session` cookie a reply sets, if any (at most one).
fn session_cookie(reply: &Reply) -> Option<SetCookie> {
    let mut found: Vec<SetCookie> = reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| {
            let mut parts = v.to_str().unwrap().split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            (name == "ds_session").then(|| SetCookie {
                value: value.to_owned(),
                attributes: parts.map(str::to_owned).collect(),
            })
        })
        .collect();
    assert!(found.len() <= 1, "one session cookie at most: {found:?}");
    found.pop()
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

fn header_of<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", reply.headers))
        .to_str()
        .unwrap()
}

/// Asserts a redirect to the sign-in page that brings the person back to `here`, and (after a
/// session ended) says why and clears the cookie.
#[track_caller]
fn assert_to_sign_in(reply: &Reply, here: &str, expired: bool) {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    let mut expected = format!("/ui/sign-in?{}", form(&[("returnTo", here)]));
    if expired {
        expected.push_str("&why=expired");
    }
    assert_eq!(location(reply), expected);
    let cookie = session_cookie(reply);
    if expired {
        let cookie = cookie.unwrap_or_else(|| panic!("the dead cookie is cleared: {reply:?}"));
        assert_eq!(cookie.value, "", "{cookie:?}");
        assert!(cookie.has("Max-Age=0"), "{cookie:?}");
        assert!(cookie.has("Path=/"), "{cookie:?}");
    } else {
        assert!(cookie.is_none(), "no cookie to clear: {reply:?}");
    }
}

/// The session's caller as whoami says, or its status.
async fn whoami(h: &Harness, session: &Session) -> (StatusCode, Value) {
    let reply = session.get(h, WHOAMI).await;
    (reply.status, reply.json())
}

// ---------------------------------------------------------------------------------------------
// Reading pages
// ---------------------------------------------------------------------------------------------

/// One start tag: its name and attributes in order (a boolean attribute has no value).
#[derive(Debug)]
struct Tag {
    name: String,
    attributes: Vec<(String, Option<String>)>,
    /// Where the text after the tag's `>` starts.
    end: usize,
}

impl Tag {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Every start tag of `html`. maud escapes `<` in text and `"` in attribute values, and quotes
/// every value with `"`, so this small scanner reads its output exactly.
fn tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(offset) = html[i..].find('<') {
        let start = i + offset + 1;
        i = start;
        if !bytes.get(start).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        let mut j = start;
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'-') {
            j += 1;
        }
        let name = html[start..j].to_ascii_lowercase();
        let mut attributes = Vec::new();
        loop {
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            match bytes.get(j) {
                None => panic!("unterminated tag <{name} in {html}"),
                Some(b'>') => {
                    j += 1;
                    break;
                }
                Some(b'/') => {
                    j += 1;
                    continue;
                }
                Some(_) => {}
            }
            let name_start = j;
            while j < bytes.len()
                && !bytes[j].is_ascii_whitespace()
                && !matches!(bytes[j], b'=' | b'>' | b'/')
            {
                j += 1;
            }
            let attribute = html[name_start..j].to_ascii_lowercase();
            if bytes.get(j) == Some(&b'=') {
                j += 1;
                assert_eq!(
                    bytes.get(j),
                    Some(&b'"'),
                    "unquoted value in <{name}: {html}"
                );
                let value_start = j + 1;
                let value_end = value_start + html[value_start..].find('"').unwrap();
                attributes.push((attribute, Some(html[value_start..value_end].to_owned())));
                j = value_end + 1;
            } else {
                attributes.push((attribute, None));
            }
        }
        found.push(Tag {
            name,
            attributes,
            end: j,
        });
        i = j;
    }
    found
}

/// What the page's Content-Security-Policy would block, described; empty when nothing.
fn csp_violations(html: &str) -> Vec<String> {
    let mut violations = Vec::new();
    for tag in tags(html) {
        for (name, value) in &tag.attributes {
            if name.starts_with("on") {
                violations.push(format!("event handler {name}= on <{}>", tag.name));
            }
            if name == "style" {
                violations.push(format!("style= on <{}>", tag.name));
            }
            if value.as_deref().is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("javascript:")
            }) {
                violations.push(format!("javascript: URL in {name}= on <{}>", tag.name));
            }
        }
        match tag.name.as_str() {
            "script" => {
                if tag.attribute("src").is_none() {
                    violations.push("a <script> without src".to_owned());
                }
                if !html[tag.end..].starts_with("</script>") {
                    violations.push("a <script> with content".to_owned());
                }
            }
            "style" => violations.push("an inline <style>".to_owned()),
            _ => {}
        }
    }
    violations
}

/// The `content` of `<meta name="csrf-token">`.
fn meta_csrf(html: &str) -> Option<String> {
    tags(html)
        .into_iter()
        .find(|t| t.name == "meta" && t.attribute("name") == Some("csrf-token"))
        .and_then(|t| t.attribute("content").map(str::to_owned))
}

/// The links to the dashboard's own files (`/ui/assets/…`) of a page.
fn asset_links(html: &str) -> Vec<String> {
    tags(html)
        .into_iter()
        .filter_map(|t| match t.name.as_str() {
            "script" => t.attribute("src").map(str::to_owned),
            "link" => t.attribute("href").map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// The HTML from `id="{id}"` to the end of the element that holds it (the next `</{tag}>`; the
/// regions read this way hold no element of the same name).
fn region<'a>(html: &'a str, tag: &str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<{tag} id=\"{id}\""))
        .or_else(|| html.find(&format!("id=\"{id}\"")))
        .unwrap_or_else(|| panic!("no {id} in {html}"));
    let end = html[start..]
        .find(&format!("</{tag}>"))
        .map_or(html.len(), |e| start + e);
    &html[start..end]
}

/// The audit page's rows as `(seq, action)`.
fn audit_rows(html: &str) -> Vec<(u64, String)> {
    let mut rows = Vec::new();
    let all = tags(html);
    for (i, tag) in all.iter().enumerate() {
        if tag.name != "tr" {
            continue;
        }
        let Some(seq) = tag.attribute("data-seq") else {
            continue;
        };
        let action = all[i..]
            .iter()
            .find(|t| t.name == "td" && t.attribute("class") == Some("action"))
            .map(|t| {
                let rest = &html[t.end..];
                rest[..rest.find("</td>").unwrap()].to_owned()
            })
            .unwrap();
        rows.push((seq.parse().unwrap(), action));
    }
    rows
}

/// The directives of a Content-Security-Policy, by name.
fn csp_directives(policy: &str) -> BTreeMap<String, String> {
    policy
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let (name, value) = d.split_once(' ').unwrap_or((d, ""));
            (name.to_owned(), value.trim().to_owned())
        })
        .collect()
}

/// The headers every dashboard response carries.
#[track_caller]
fn assert_protected(reply: &Reply, what: &str) {
    let policy = header_of(reply, "content-security-policy");
    let expected: BTreeMap<String, String> = [
        ("default-src", "'none'"),
        ("script-src", "'self'"),
        ("style-src", "'self'"),
        ("img-src", "'self'"),
        ("connect-src", "'self'"),
        ("form-action", "'self'"),
        ("base-uri", "'none'"),
        ("frame-ancestors", "'none'"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(csp_directives(policy), expected, "{what}: {policy}");
    assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
    assert!(!policy.contains("unsafe-eval"), "{what}: {policy}");
    assert_eq!(header_of(reply, "x-frame-options"), "DENY", "{what}");
    assert_eq!(
        header_of(reply, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    assert_eq!(header_of(reply, "referrer-policy"), "same-origin", "{what}");
}

/// A page: HTML, the dashboard's headers, never cached, nothing the policy would block.
#[track_caller]
fn assert_page(reply: &Reply, status: StatusCode, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert_eq!(
        header_of(reply, "content-type"),
        "text/html; charset=utf-8",
        "{what}"
    );
    assert_eq!(header_of(reply, "cache-control"), "no-store", "{what}");
    assert_protected(reply, what);
    assert!(reply.text.starts_with("<!DOCTYPE html>"), "{what}");
    let violations = csp_violations(&reply.text);
    assert!(violations.is_empty(), "{what}: {violations:?}");
}

/// The checks above find what they look for: a page with each thing the policy blocks.
#[test]
fn the_page_checks_see_what_the_policy_would_block() {
    let clean = r#"<!DOCTYPE html><html><head><meta name="csrf-token" content="abc"><script src="/ui/assets/dashboard.js?v=1" defer></script></head><body><p title="a &quot;b&quot;">x &lt;script&gt;</p><input required autofocus></body></html>"#;
    assert_eq!(csp_violations(clean), Vec::<String>::new());
    assert_eq!(meta_csrf(clean).as_deref(), Some("abc"));
    assert_eq!(asset_links(clean), ["/ui/assets/dashboard.js?v=1"]);
    for (html, violation) in [
        ("<script>alert(1)</script>", "a <script> without src"),
        (
            r#"<script src="/x.js">alert(1)</script>"#,
            "a <script> with content",
        ),
        (
            r#"<button onclick="go()">"#,
            "event handler onclick= on <button>",
        ),
        (
            r#"<img src="x" onerror="go()">"#,
            "event handler onerror= on <img>",
        ),
        (r#"<p style="color: red">"#, "style= on <p>"),
        ("<style>p{}</style>", "an inline <style>"),
        (
            r#"<a href="javascript:go()">"#,
            "javascript: URL in href= on <a>",
        ),
    ] {
        assert!(
            csp_violations(html).iter().any(|v| v == violation),
            "{html}: {:?}",
            csp_violations(html)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// State to show
// ---------------------------------------------------------------------------------------------

/// Starts a staging canary through the API as the developer; its id.
async fn start_staging_canary(h: &Harness) -> String {
    let (status, started) = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            json!({"releaseId": "v1.2.3", "environment": "staging", "deploymentId": "deploy-001"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "start canary: {started}");
    started["id"].as_str().unwrap().to_owned()
}

/// A freeze, an incident and an override, so every page has rows and their forms.
async fn fill(h: &Harness) {
    let (status, body) = h
        .post(
            "/freezes",
            &h.tokens.security,
            json!({"name": "year-end", "reason": "CHG-7: year-end change freeze",
                   "environments": ["production"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    h.open_incident(
        &h.tokens.oncall,
        json!({"title": "DNS provider slow", "severity": "low", "category": "operational"}),
    )
    .await;
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.rollback", "staging", 60),
    )
    .await;
    let validation = h.validate("v1.2.3", "staging").await;
    assert!(validation["id"].is_string(), "{validation}");
}

/// Pushes healthy metrics for the staging canary and lets one step run (5 minutes later), so
/// its page has a chart with points, metrics against their bounds and an evaluation.
async fn step_staging_canary(h: &Harness, id: &str) {
    let (status, view) = h
        .post(
            "/canary/staging/metrics",
            &h.tokens.developer,
            json!({"errorRatePercent": 0.1, "latencyP99Ms": 100.0, "baselineLatencyP99Ms": 95.0,
                   "cpuPercent": 30.0, "memoryPercent": 40.0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "push metrics: {view}");
    h.clock.advance_minutes(5);
    h.check_due_probes().await;
    let stepped = h.step_due_canaries().await;
    assert!(
        stepped
            .iter()
            .any(|(stepped, action)| stepped == id && action.is_some()),
        "{stepped:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Security headers, and nothing the policy would block
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_page_has_the_security_headers_and_nothing_the_policy_blocks() {
    let h = Harness::new().await;
    let canary = start_staging_canary(&h).await;
    step_staging_canary(&h, &canary).await;
    fill(&h).await;
    let session = sign_in(&h, &h.tokens.security).await;

    let canary_page = format!("/ui/canaries/{canary}");
    let mut paths: Vec<&str> = PAGES.to_vec();
    paths.extend(["/ui/audit?verify=1", canary_page.as_str()]);
    for path in &paths {
        let reply = session.get(&h, path).await;
        assert_page(&reply, StatusCode::OK, path);
        assert_eq!(
            meta_csrf(&reply.text).as_deref(),
            Some(session.csrf.as_str()),
            "{path}: the page gives its script the session's CSRF token"
        );
        assert!(
            reply
                .text
                .contains(r#"<span id="whoami">security-team (security-team)</span>"#),
            "{path}: who is signed in"
        );
    }
    // The pages show what they are about.
    let list = session.get(&h, "/ui/canaries").await.text;
    assert!(
        list.contains(&format!(r#"data-canary-id="{canary}""#)),
        "{list}"
    );
    let detail = session.get(&h, &canary_page).await.text;
    assert!(
        detail.contains("<title>Canary v1.2.3 in staging — deploy-safety</title>"),
        "{detail}"
    );
    assert!(
        detail.contains(r#"<span id="canary-percentage">20 %</span>"#),
        "one step up from 10 %: {detail}"
    );
    assert!(detail.contains("<svg"), "the chart: {detail}");
    let evaluations = region(&detail, "table", "evaluations");
    assert!(
        evaluations.contains("stepped_up") && evaluations.contains("10 % → 20 %"),
        "the step's evaluation: {evaluations}"
    );
    let metrics = region(&detail, "table", "metrics");
    assert!(
        metrics.contains(r#"<th scope="row">errorRatePercent</th>"#) && metrics.contains("0.5 %"),
        "each metric against its bounds: {metrics}"
    );

    // Pages that fail are pages too, with the same protections.
    let missing = session.get(&h, "/ui/canaries/cnr_missing").await;
    assert_page(
        &missing,
        StatusCode::NOT_FOUND,
        "a canary that does not exist",
    );
    assert!(missing.text.contains(r#"role="alert""#), "{}", missing.text);
    let nowhere = session.get(&h, "/ui/nowhere").await;
    assert_page(
        &nowhere,
        StatusCode::NOT_FOUND,
        "a page that does not exist",
    );

    // The sign-in page (no session) and its refusals.
    let page = request(&h, Method::GET, "/ui/sign-in", &[("host", LOOPBACK)], None).await;
    assert_page(&page, StatusCode::OK, "the sign-in page");
    assert!(
        page.text
            .contains(r#"<form id="sign-in" method="post" action="/ui/sign-in">"#)
    );
    assert!(
        meta_csrf(&page.text).is_none(),
        "no session, no CSRF token: {}",
        page.text
    );
    let refused = post_sign_in(&h, &[("host", LOOPBACK)], &[("token", "ds_nope.nope")]).await;
    assert_page(&refused, StatusCode::UNAUTHORIZED, "a refused sign-in");

    // The redirect to sign in carries them too, and is not cached.
    let away = request(&h, Method::GET, "/ui/audit", &[("host", LOOPBACK)], None).await;
    assert_to_sign_in(&away, "/ui/audit", false);
    assert_protected(&away, "the redirect to sign in");
    assert_eq!(header_of(&away, "cache-control"), "no-store");
}

#[tokio::test]
async fn assets_are_cached_by_their_hash_and_answer_304_to_their_etag() {
    let h = Harness::new().await;
    let session = sign_in(&h, &h.tokens.developer).await;
    let page = session.get(&h, "/ui/").await;
    let links = asset_links(&page.text);
    let expected_types = [
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ];
    for (file, _) in expected_types {
        assert!(
            links
                .iter()
                .any(|l| l.starts_with(&format!("/ui/assets/{file}?v="))),
            "{file} linked with its version: {links:?}"
        );
    }
    for link in &links {
        let (path, version) = link.split_once("?v=").unwrap();
        let file = path.strip_prefix("/ui/assets/").unwrap();
        let content_type = expected_types
            .iter()
            .find(|(f, _)| *f == file)
            .unwrap_or_else(|| panic!("an unexpected asset {link}"))
            .1;
        let reply = request(&h, Method::GET, link, &[("host", LOOPBACK)], None).await;
        assert_eq!(reply.status, StatusCode::OK, "{link}");
        assert!(!reply.text.is_empty(), "{link}");
        assert_eq!(header_of(&reply, "content-type"), content_type, "{link}");
        let cache = header_of(&reply, "cache-control");
        assert!(cache.contains("max-age="), "{link}: {cache}");
        assert!(!cache.contains("no-store"), "{link}: {cache}");
        assert_protected(&reply, link);
        // The ETag is the content hash the link carries.
        let etag = header_of(&reply, "etag").to_owned();
        assert_eq!(etag, format!("\"{version}\""), "{link}");

        for sent in [etag.clone(), format!("\"other\", {etag}")] {
            let again = request(
                &h,
                Method::GET,
                link,
                &[("host", LOOPBACK), ("if-none-match", &sent)],
                None,
            )
            .await;
            assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{link} {sent}");
            assert!(again.text.is_empty(), "{link}: a 304 has no body");
            assert_eq!(header_of(&again, "etag"), etag, "{link}");
            assert_protected(&again, link);
        }
        let stale = request(
            &h,
            Method::GET,
            link,
            &[
                ("host", LOOPBACK),
                ("if-none-match", "\"0000000000000000\""),
            ],
            None,
        )
        .await;
        assert_eq!(stale.status, StatusCode::OK, "{link}: another version");
        assert_eq!(stale.text, reply.text);
    }
    // The script itself keeps to the policy: no eval, no HTML from responses.
    let script_link = links.iter().find(|l| l.contains("dashboard.js")).unwrap();
    let script = request(&h, Method::GET, script_link, &[], None).await.text;
    for forbidden in ["eval(", "new Function", ".innerHTML", "document.write"] {
        assert!(!script.contains(forbidden), "dashboard.js uses {forbidden}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Signing in
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_root_and_every_page_without_a_session_lead_to_sign_in() {
    let h = Harness::new().await;
    for root in ["/", "/ui"] {
        let reply = request(&h, Method::GET, root, &[("host", LOOPBACK)], None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{root}");
        assert_eq!(location(&reply), "/ui/", "{root}");
    }
    let mut paths: Vec<&str> = PAGES.to_vec();
    paths.extend([
        "/ui/audit?verify=1&action=token.create",
        "/ui/canaries/cnr_x",
    ]);
    for path in paths {
        let reply = request(&h, Method::GET, path, &[("host", LOOPBACK)], None).await;
        assert_to_sign_in(&reply, path, false);
    }
    let reply = request(&h, Method::GET, "/ui/overrides", &[], None).await;
    assert_eq!(
        location(&reply),
        "/ui/sign-in?returnTo=%2Fui%2Foverrides",
        "as the brief spells it"
    );
    // A cookie that was never a session: to sign in, and the cookie goes.
    for cookie in ["ds_session=garbage", "ds_session=dss_abc.def"] {
        let reply = request(
            &h,
            Method::GET,
            "/ui/freezes",
            &[("host", LOOPBACK), ("cookie", cookie)],
            None,
        )
        .await;
        assert_to_sign_in(&reply, "/ui/freezes", true);
    }
}

#[tokio::test]
async fn a_token_signs_in_and_its_session_is_recorded() {
    let h = Harness::new().await;
    let issued = h
        .app
        .create_token("alice", Role::EngLead, "test")
        .await
        .unwrap();
    let sessions_before = h.app.list_sessions().await.unwrap().len();

    let reply = post_sign_in(
        &h,
        &[("host", LOOPBACK)],
        &[("token", &issued.token), ("returnTo", "/ui/overrides")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    assert_eq!(location(&reply), "/ui/overrides");
    assert_eq!(header_of(&reply, "cache-control"), "no-store");
    assert_protected(&reply, "the sign-in's redirect");
    let cookie = session_cookie(&reply).unwrap();
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=43200"] {
        assert!(cookie.has(attribute), "{attribute}: {cookie:?}");
    }
    assert!(!cookie.has("Secure"), "plain http to loopback: {cookie:?}");
    assert!(!cookie.value.contains(&issued.token), "{cookie:?}");
    assert_eq!(
        h.app.list_sessions().await.unwrap().len(),
        sessions_before + 1
    );

    // The cookie is a session of the token's principal.
    let session_cookie = format!("ds_session={}", cookie.value);
    let me = request(
        &h,
        Method::GET,
        WHOAMI,
        &[("host", LOOPBACK), ("cookie", &session_cookie)],
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    let me = me.json();
    assert_eq!(me["principal"], "alice");
    assert_eq!(me["role"], "eng-lead");
    assert_eq!(me["authenticatedBy"], "token-session");
    assert_eq!(me["tokenId"], issued.view.id.as_str());
    let csrf = me["csrfToken"].as_str().unwrap();
    assert!(csrf.len() >= 32, "{me}");

    // The page it lands on works with the cookie alone.
    let session = Session {
        cookie: session_cookie,
        csrf: csrf.to_owned(),
    };
    let page = session.get(&h, "/ui/overrides").await;
    assert_page(&page, StatusCode::OK, "/ui/overrides");

    // Someone signed in who opens the sign-in page goes on.
    let again = session.get(&h, "/ui/sign-in?returnTo=%2Fui%2Faudit").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&again), "/ui/audit");

    // auth.login says how alice proved who she is, and never the token.
    let logins = h.audit("action=auth.login").await;
    assert_eq!(logins.len(), 1, "{logins:?}");
    let login = &logins[0];
    assert_eq!(login["principal"], "alice");
    assert_eq!(login["role"], "eng-lead");
    assert_eq!(login["decision"], "allowed");
    assert_eq!(login["details"]["authenticatedBy"], "token-session");
    assert_eq!(login["details"]["tokenId"], issued.view.id.as_str());
    assert!(login["details"]["sessionId"].is_string(), "{login}");
    let secret = issued.token.split_once('.').unwrap().1;
    let everything = h.audit("limit=1000").await;
    let text = serde_json::to_string(&everything).unwrap();
    assert!(!text.contains(secret), "the audit log never holds a token");
    assert!(!text.contains(&cookie.value), "nor a session cookie");
}

#[tokio::test]
async fn the_cookie_is_secure_unless_the_browser_is_on_plain_http_to_loopback() {
    let h = Harness::new().await;
    let cases: [(&[(&str, &str)], bool); 7] = [
        (&[("host", "127.0.0.1:8080")], false),
        (&[("host", "localhost:3000")], false),
        (&[("host", "[::1]:8080")], false),
        (&[("host", "deploy.example.com")], true),
        (&[("host", "10.0.0.5:8080")], true),
        (
            &[("host", "127.0.0.1:8080"), ("x-forwarded-proto", "https")],
            true,
        ),
        // No Host at all: nothing says it is loopback.
        (&[], true),
    ];
    for (headers, secure) in cases {
        let reply = post_sign_in(&h, headers, &[("token", &h.tokens.developer)]).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{headers:?}: {reply:?}"
        );
        let cookie = session_cookie(&reply).unwrap();
        assert_eq!(cookie.has("Secure"), secure, "{headers:?}: {cookie:?}");
        assert!(
            cookie.has("HttpOnly") && cookie.has("SameSite=Lax"),
            "{cookie:?}"
        );
    }
}

#[tokio::test]
async fn bad_sign_ins_set_no_cookie_and_start_no_session() {
    let h = Harness::new().await;
    let revoked = h
        .app
        .create_token("gone", Role::Developer, "test")
        .await
        .unwrap();
    h.app
        .revoke_token(&revoked.view.id, "security-team")
        .await
        .unwrap();
    let sessions_before = h.app.list_sessions().await.unwrap().len();
    let (_, real_secret) = h.tokens.developer.split_once('.').unwrap();
    let wrong_secret = format!(
        "{}.{}x",
        h.tokens.developer.split_once('.').unwrap().0,
        real_secret
    );
    let cases: Vec<(&str, String, StatusCode)> = vec![
        (
            "unknown",
            "ds_0123456789abcdef.nope".to_owned(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "not a token",
            "hunter2".to_owned(),
            StatusCode::UNAUTHORIZED,
        ),
        ("a wrong secret", wrong_secret, StatusCode::UNAUTHORIZED),
        ("revoked", revoked.token.clone(), StatusCode::UNAUTHORIZED),
        ("empty", String::new(), StatusCode::BAD_REQUEST),
        ("blank", "   ".to_owned(), StatusCode::BAD_REQUEST),
    ];
    for (what, token, status) in cases {
        let reply = post_sign_in(
            &h,
            &[("host", LOOPBACK)],
            &[("token", &token), ("returnTo", "/ui/audit")],
        )
        .await;
        assert_page(&reply, status, what);
        assert!(session_cookie(&reply).is_none(), "{what}: {reply:?}");
        assert!(
            reply.text.contains(r#"role="alert""#),
            "{what}: says why: {}",
            reply.text
        );
        // The form is there again, still going to where the person was going.
        assert!(
            reply
                .text
                .contains(r#"<input type="hidden" name="returnTo" value="/ui/audit">"#),
            "{what}: {}",
            reply.text
        );
        assert!(
            token.trim().is_empty() || !reply.text.contains(&token),
            "{what}: the page never echoes the token"
        );
    }
    // No token field at all is the same as an empty one.
    let reply = post_sign_in(&h, &[("host", LOOPBACK)], &[("returnTo", "/ui/")]).await;
    assert_page(&reply, StatusCode::BAD_REQUEST, "no token field");
    assert!(session_cookie(&reply).is_none());
    assert_eq!(h.app.list_sessions().await.unwrap().len(), sessions_before);
    assert!(h.audit("action=auth.login").await.is_empty());
}

#[tokio::test]
async fn a_sign_in_goes_back_only_to_a_dashboard_page() {
    let h = Harness::new().await;
    for (return_to, lands) in [
        ("/ui/overrides", "/ui/overrides"),
        ("/ui/audit?action=auth.login", "/ui/audit?action=auth.login"),
        ("https://evil.example/", "/ui/"),
        ("//evil", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("/\\evil.example", "/ui/"),
        ("javascript:alert(1)", "/ui/"),
        ("/api/deploy-safety/auth/whoami", "/ui/"),
        ("/ui/sign-in", "/ui/"),
        ("", "/ui/"),
    ] {
        let reply = post_sign_in(
            &h,
            &[("host", LOOPBACK)],
            &[("token", &h.tokens.developer), ("returnTo", return_to)],
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{return_to}: {reply:?}"
        );
        assert_eq!(location(&reply), lands, "{return_to}");
        assert!(session_cookie(&reply).is_some(), "{return_to}");
    }
    // The sign-in page puts only a safe place in its form.
    let page = request(
        &h,
        Method::GET,
        "/ui/sign-in?returnTo=https%3A%2F%2Fevil.example%2F",
        &[("host", LOOPBACK)],
        None,
    )
    .await;
    assert_page(&page, StatusCode::OK, "sign-in with a foreign returnTo");
    assert!(
        page.text
            .contains(r#"<input type="hidden" name="returnTo" value="/ui/">"#),
        "{}",
        page.text
    );
    assert!(!page.text.contains("evil.example"), "{}", page.text);
}

#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused() {
    let h = Harness::new().await;
    let sessions_before = h.app.list_sessions().await.unwrap().len();
    let refused: [&[(&str, &str)]; 4] = [
        &[("host", LOOPBACK), ("origin", "https://evil.example")],
        &[("host", LOOPBACK), ("sec-fetch-site", "cross-site")],
        &[("host", LOOPBACK), ("sec-fetch-site", "same-site")],
        // Same name, another port: another origin.
        &[("host", LOOPBACK), ("origin", "http://127.0.0.1:9999")],
    ];
    for headers in refused {
        let reply = post_sign_in(
            &h,
            headers,
            &[("token", &h.tokens.security), ("returnTo", "/ui/")],
        )
        .await;
        assert_page(&reply, StatusCode::FORBIDDEN, &format!("{headers:?}"));
        assert!(session_cookie(&reply).is_none(), "{headers:?}: {reply:?}");
        assert!(reply.text.contains(r#"role="alert""#), "{headers:?}");
    }
    assert_eq!(h.app.list_sessions().await.unwrap().len(), sessions_before);
    assert!(h.audit("action=auth.login").await.is_empty());

    // The browser's word that the form is this server's own is welcome.
    let allowed: [&[(&str, &str)]; 3] = [
        &[("host", LOOPBACK), ("origin", "http://127.0.0.1:8080")],
        &[("host", LOOPBACK), ("sec-fetch-site", "same-origin")],
        &[("host", LOOPBACK), ("sec-fetch-site", "none")],
    ];
    for headers in allowed {
        let reply = post_sign_in(&h, headers, &[("token", &h.tokens.security)]).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{headers:?}: {reply:?}"
        );
        assert!(session_cookie(&reply).is_some(), "{headers:?}");
    }
    assert_eq!(
        h.app.list_sessions().await.unwrap().len(),
        sessions_before + 3
    );
}

fn oidc_settings(provider: &FakeProvider) -> AppSettings {
    let issuer = OidcIssuerSettings {
        name: "github".to_owned(),
        issuer: provider.issuer(),
        audience: "deploy-safety".to_owned(),
        jwks_url: None,
        algorithms: vec![Algorithm::RS256],
        leeway_seconds: 60,
        max_token_age_minutes: 60,
        bindings: vec![Binding {
            claims: [("repository".to_owned(), ClaimPattern::new("acme/*"))]
                .into_iter()
                .collect(),
            principal: PrincipalTemplate::parse("github:{repository}").unwrap(),
            role: Role::EngLead,
        }],
    };
    AppSettings {
        auth: AuthSettings {
            oidc: vec![issuer],
            sso: None,
            provider_timeout: Duration::from_secs(3),
        },
        ..AppSettings::default()
    }
}

#[tokio::test]
async fn a_pipelines_oidc_token_never_opens_a_session() {
    let provider = FakeProvider::start().await;
    let h = Harness::with_app_settings(HttpSettings::default(), oidc_settings(&provider)).await;
    let now = h.clock.now().unix_millis() / 1000;
    let jwt = provider.sign(&json!({
        "iss": provider.issuer(),
        "aud": "deploy-safety",
        "sub": "repo:acme/payments:environment:production",
        "repository": "acme/payments",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }));
    // The token is good: as a bearer credential it authenticates.
    let (status, me) = h.get("/auth/whoami", &jwt).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["authenticatedBy"], "oidc:github");

    let sessions_before = h.app.list_sessions().await.unwrap().len();
    let reply = post_sign_in(&h, &[("host", LOOPBACK)], &[("token", &jwt)]).await;
    assert_page(&reply, StatusCode::UNAUTHORIZED, "an OIDC token");
    assert!(session_cookie(&reply).is_none(), "{reply:?}");
    assert!(reply.text.contains("OIDC"), "says why: {}", reply.text);
    assert_eq!(h.app.list_sessions().await.unwrap().len(), sessions_before);
    assert!(h.audit("action=auth.login").await.is_empty());
}

#[tokio::test]
async fn with_single_sign_on_configured_the_token_form_is_not_offered() {
    let provider = FakeProvider::start().await;
    let sso = SsoSettings {
        issuer: provider.issuer(),
        client_id: "deploy-safety".to_owned(),
        client_secret: "sso-client-secret-5b1e0c7a".to_owned(),
        redirect_url: "https://deploy.example.com/api/deploy-safety/auth/callback".to_owned(),
        scopes: ["openid", "email"].map(str::to_owned).to_vec(),
        principal_claim: "email".to_owned(),
        role_claim: "groups".to_owned(),
        roles: BTreeMap::from([("devs".to_owned(), Role::Developer)]),
        session_lifetime: Duration::from_secs(12 * 3600),
        session_idle_timeout: Duration::from_secs(3600),
    };
    let settings = AppSettings {
        auth: AuthSettings {
            sso: Some(sso),
            ..AuthSettings::default()
        },
        ..AppSettings::default()
    };
    let h = Harness::with_app_settings(HttpSettings::default(), settings).await;
    let page = request(
        &h,
        Method::GET,
        "/ui/sign-in?returnTo=%2Fui%2Fincidents",
        &[("host", "deploy.example.com")],
        None,
    )
    .await;
    assert_page(&page, StatusCode::OK, "the sign-in page with SSO");
    let link = tags(&page.text)
        .into_iter()
        .find(|t| t.name == "a" && t.attribute("id") == Some("sso-sign-in"))
        .unwrap_or_else(|| panic!("the SSO link: {}", page.text));
    assert_eq!(
        link.attribute("href")
            .map(|h| h.replace("&amp;", "&"))
            .as_deref(),
        Some("/api/deploy-safety/auth/login?returnTo=%2Fui%2Fincidents")
    );
    assert!(!page.text.contains(r#"name="token""#), "{}", page.text);

    let sessions_before = h.app.list_sessions().await.unwrap().len();
    let reply = post_sign_in(
        &h,
        &[("host", "deploy.example.com")],
        &[("token", &h.tokens.developer)],
    )
    .await;
    assert_page(&reply, StatusCode::NOT_FOUND, "a token sign-in with SSO");
    assert!(session_cookie(&reply).is_none(), "{reply:?}");
    assert!(reply.text.contains("single sign-on"), "{}", reply.text);
    assert_eq!(h.app.list_sessions().await.unwrap().len(), sessions_before);
}

// ---------------------------------------------------------------------------------------------
// 3. CSRF
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_cookie_changes_state_only_with_the_sessions_csrf_token() {
    let h = Harness::new().await;
    let override_id = h
        .create_override(
            &h.tokens.security,
            override_body("deploy.rollback", "staging", 60),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = sign_in(&h, &h.tokens.security).await;
    let other = sign_in(&h, &h.tokens.security).await;
    assert_ne!(session.csrf, other.csrf, "each session has its own token");

    // The page gives its script the same token whoami does; reading pages needs none.
    let page = session.get(&h, "/ui/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        meta_csrf(&page.text).as_deref(),
        Some(session.csrf.as_str())
    );
    let status = session
        .get(&h, "/api/deploy-safety/security-gate/status")
        .await;
    assert_eq!(status.status, StatusCode::OK, "a GET needs no CSRF token");

    let revoke = format!("/api/deploy-safety/security-gate/override/{override_id}");
    let actions: [(Method, &str, Option<Value>); 3] = [
        (
            Method::POST,
            MODE,
            Some(json!({"mode": "monitor", "reason": "INC-1"})),
        ),
        (Method::DELETE, &revoke, None),
        (Method::POST, LOGOUT, None),
    ];
    let audit_before = h.audit("limit=1000").await.len();
    for (method, path, body) in &actions {
        for (what, csrf) in [
            ("no token", None),
            ("a wrong token", Some("not-the-token")),
            ("an empty token", Some("")),
            ("another session's token", Some(other.csrf.as_str())),
        ] {
            let reply = session
                .send(&h, method.clone(), path, csrf, body.clone())
                .await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{method} {path}, {what}: {reply:?}"
            );
            let error = &reply.json()["error"];
            assert_eq!(error["reason"], "CSRF", "{method} {path}, {what}: {error}");
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    // Nothing changed: the mode, the override, the session; nothing was recorded.
    assert_eq!(h.status().await["mode"], "enforce");
    let overrides = h.all_overrides().await;
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0]["status"], "active", "{overrides:?}");
    assert_eq!(whoami(&h, &session).await.0, StatusCode::OK);
    assert_eq!(h.audit("limit=1000").await.len(), audit_before);

    // With the session's own token, as the page sends it.
    let reply = session
        .act(
            &h,
            Method::POST,
            MODE,
            Some(json!({"mode": "monitor", "reason": "INC-1"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["mode"], "monitor");
    assert_eq!(h.status().await["mode"], "monitor");
    let set = h.audit(&format!("action={MODE_ACTION}")).await;
    assert_eq!(set[0]["principal"], "security-team");
    assert_eq!(set[0]["details"]["to"], "monitor", "{set:?}");
    assert_eq!(
        set[0]["details"]["authenticatedBy"], "token-session",
        "an action through the session says so: {set:?}"
    );

    // A bearer token needs no CSRF token: the browser never sends one on its own.
    let (status, body) = h
        .post(
            "/security-gate/mode",
            &h.tokens.security,
            json!({"mode": "enforce"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

// ---------------------------------------------------------------------------------------------
// 4. Session lifetimes, revocation, sign-out
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_session_ends_after_an_hour_unused() {
    let h = Harness::new().await;
    let used = sign_in(&h, &h.tokens.developer).await;
    let idle = sign_in(&h, &h.tokens.developer).await;

    h.clock.advance_minutes(59);
    assert_eq!(used.get(&h, "/ui/").await.status, StatusCode::OK);
    h.clock.advance_minutes(2);
    // 61 minutes after sign-in: the one used at 59 is alive, the other idle too long.
    assert_eq!(used.get(&h, "/ui/").await.status, StatusCode::OK);
    let reply = idle.get(&h, "/ui/").await;
    assert_to_sign_in(&reply, "/ui/", true);
    assert_protected(&reply, "the redirect after expiry");
    assert_eq!(whoami(&h, &idle).await.0, StatusCode::UNAUTHORIZED);
    let reply = idle.get(&h, "/ui/audit?verify=1").await;
    assert_to_sign_in(&reply, "/ui/audit?verify=1", true);

    // The sign-in page says why.
    let page = request(
        &h,
        Method::GET,
        &location(&reply),
        &[("host", LOOPBACK), ("cookie", &idle.cookie)],
        None,
    )
    .await;
    assert_page(&page, StatusCode::OK, "sign-in after expiry");
    assert!(page.text.contains(r#"role="status""#), "{}", page.text);
    assert!(page.text.contains("Your session ended"), "{}", page.text);
    assert!(
        page.text
            .contains(r#"<input type="hidden" name="returnTo" value="/ui/audit?verify=1">"#),
        "{}",
        page.text
    );

    // Exactly an hour unused is too long as well.
    h.clock.advance_minutes(60);
    assert_to_sign_in(&used.get(&h, "/ui/").await, "/ui/", true);
}

#[tokio::test]
async fn activity_keeps_a_session_alive_until_its_twelve_hours_are_over() {
    let h = Harness::new().await;
    let session = sign_in(&h, &h.tokens.oncall).await;
    // Every 50 minutes, up to 700 minutes after sign-in.
    for step in 1..=14 {
        h.clock.advance_minutes(50);
        let reply = session.get(&h, "/ui/incidents").await;
        assert_eq!(reply.status, StatusCode::OK, "after {} minutes", step * 50);
    }
    h.clock.advance_minutes(19);
    assert_eq!(whoami(&h, &session).await.0, StatusCode::OK, "719 minutes");
    // 720 minutes: used a minute ago, but twelve hours old.
    h.clock.advance_minutes(1);
    assert_eq!(h.clock.now(), START.plus_minutes(720));
    assert_to_sign_in(
        &session.get(&h, "/ui/incidents").await,
        "/ui/incidents",
        true,
    );
    assert_eq!(whoami(&h, &session).await.0, StatusCode::UNAUTHORIZED);
    let reply = session
        .act(&h, Method::POST, MODE, Some(json!({"mode": "monitor"})))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    // A fresh sign-in is a fresh twelve hours.
    let fresh = sign_in(&h, &h.tokens.oncall).await;
    assert_eq!(fresh.get(&h, "/ui/incidents").await.status, StatusCode::OK);
}

#[tokio::test]
async fn revoking_a_token_ends_its_sessions_at_once() {
    let h = Harness::new().await;
    let first = h
        .app
        .create_token("bob", Role::EngLead, "test")
        .await
        .unwrap();
    let second = h
        .app
        .create_token("bob", Role::EngLead, "test")
        .await
        .unwrap();
    let by_first = sign_in(&h, &first.token).await;
    let by_first_too = sign_in(&h, &first.token).await;
    let by_second = sign_in(&h, &second.token).await;

    h.app
        .revoke_token(&first.view.id, "security-team")
        .await
        .unwrap();
    // No time passes: both of the token's sessions end now; the other token's lives on.
    for session in [&by_first, &by_first_too] {
        let (status, body) = whoami(&h, session).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_to_sign_in(
            &session.get(&h, "/ui/overrides").await,
            "/ui/overrides",
            true,
        );
    }
    let (status, me) = whoami(&h, &by_second).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["tokenId"], second.view.id.as_str());
    let revoked = h.audit("action=token.revoke").await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["details"]["sessionsRevoked"], 2, "{revoked:?}");
    let sessions = h.app.list_sessions().await.unwrap();
    let of_first: Vec<_> = sessions
        .iter()
        .filter(|s| s.token_id.as_deref() == Some(first.view.id.as_str()))
        .collect();
    assert_eq!(of_first.len(), 2);
    assert!(
        of_first
            .iter()
            .all(|s| s.revoked_by.as_deref() == Some("security-team")),
        "{of_first:?}"
    );

    // Revoking every token of the principal ends the rest.
    h.app
        .revoke_principal_tokens("bob", "security-team")
        .await
        .unwrap();
    assert_eq!(whoami(&h, &by_second).await.0, StatusCode::UNAUTHORIZED);
    assert_to_sign_in(&by_second.get(&h, "/ui/").await, "/ui/", true);
    // And the revoked token cannot sign in again.
    let reply = post_sign_in(&h, &[("host", LOOPBACK)], &[("token", &first.token)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let h = Harness::new().await;
    let session = sign_in(&h, &h.tokens.eng_lead).await;
    let elsewhere = sign_in(&h, &h.tokens.eng_lead).await;

    let reply = session.act(&h, Method::POST, LOGOUT, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    let cleared = session_cookie(&reply).expect("the cookie is cleared");
    assert_eq!(cleared.value, "");
    assert!(cleared.has("Max-Age=0"), "{cleared:?}");

    assert_eq!(whoami(&h, &session).await.0, StatusCode::UNAUTHORIZED);
    assert_to_sign_in(&session.get(&h, "/ui/").await, "/ui/", true);
    let again = session.act(&h, Method::POST, LOGOUT, None).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{again:?}");
    // Only this session: the same person's other browser is still signed in.
    assert_eq!(whoami(&h, &elsewhere).await.0, StatusCode::OK);

    let logouts = h.audit("action=auth.logout").await;
    assert_eq!(logouts.len(), 1, "{logouts:?}");
    assert_eq!(logouts[0]["principal"], "eng-lead");
    assert_eq!(logouts[0]["details"]["authenticatedBy"], "token-session");
}

/// The cookie that ends a session has the flags of the one that started it: on plain http to
/// a loopback address a `Secure` clearing cookie may be refused by the browser (it came over
/// plain http), leaving the dead cookie in the jar.
#[tokio::test]
async fn signing_out_clears_the_cookie_with_the_flags_it_was_set_with() {
    let h = Harness::new().await;
    for (host, secure) in [(LOOPBACK, false), ("deploy.example.com", true)] {
        let reply = post_sign_in(&h, &[("host", host)], &[("token", &h.tokens.developer)]).await;
        let set = session_cookie(&reply).unwrap();
        assert_eq!(set.has("Secure"), secure, "{host}: {set:?}");
        let session = Session {
            cookie: format!("ds_session={}", set.value),
            csrf: String::new(),
        };
        let (_, me) = whoami(&h, &session).await;
        let csrf = me["csrfToken"].as_str().unwrap();
        let reply = request(
            &h,
            Method::POST,
            LOGOUT,
            &[
                ("host", host),
                ("cookie", &session.cookie),
                ("x-csrf-token", csrf),
            ],
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{host}: {reply:?}");
        let cleared = session_cookie(&reply).unwrap();
        assert!(cleared.has("Max-Age=0"), "{host}: {cleared:?}");
        assert_eq!(
            cleared.has("Secure"),
            set.has("Secure"),
            "{host}: set as {set:?}, cleared as {cleared:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Pages show the state, escaped
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_lockdown_banner_shows_its_reason_escaped_on_every_page() {
    let h = Harness::new().await;
    let session = sign_in(&h, &h.tokens.developer).await;
    let reason = "<script>alert(1)</script> INC-7";
    h.set_mode("lockdown", Some(reason)).await;

    for path in PAGES {
        let reply = session.get(&h, path).await;
        assert_page(&reply, StatusCode::OK, path);
        let banner = region(&reply.text, "div", "lockdown-banner");
        assert!(banner.contains(r#"role="alert""#), "{path}: {banner}");
        assert!(banner.contains("LOCKDOWN"), "{path}: {banner}");
        assert!(
            banner.contains("&lt;script&gt;alert(1)&lt;/script&gt; INC-7"),
            "{path}: {banner}"
        );
        assert!(
            !reply.text.contains("<script>alert(1)"),
            "{path}: the reason is never markup"
        );
    }
    let overview = session.get(&h, "/ui/").await.text;
    assert!(
        region(&overview, "dd", "mode").contains("lockdown"),
        "{overview}"
    );

    h.set_mode("enforce", Some("INC-7 contained")).await;
    for path in PAGES {
        let reply = session.get(&h, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(
            !reply.text.contains("lockdown-banner"),
            "{path}: no banner in enforce"
        );
        assert!(!reply.text.contains("<script>alert(1)"), "{path}");
    }
}

#[tokio::test]
async fn what_a_link_carries_is_escaped_too() {
    let h = Harness::new().await;
    let session = sign_in(&h, &h.tokens.developer).await;
    // An id in the path, shown in the "not found" message.
    let reply = session
        .get(&h, "/ui/canaries/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert_page(&reply, StatusCode::NOT_FOUND, "a canary id with markup");
    assert!(!reply.text.contains("<script>alert"), "{}", reply.text);
    // A place to come back to, in the sign-in form (a dashboard path, so it is kept).
    let reply = request(
        &h,
        Method::GET,
        "/ui/sign-in?returnTo=%2Fui%2F%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &[("host", LOOPBACK)],
        None,
    )
    .await;
    assert_page(&reply, StatusCode::OK, "a returnTo with markup");
    assert!(!reply.text.contains("<script>alert"), "{}", reply.text);
    assert!(
        reply.text.contains(
            r#"name="returnTo" value="/ui/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">"#
        ),
        "{}",
        reply.text
    );
    // An audit filter value, kept in the filter form.
    let reply = session
        .get(
            &h,
            "/ui/audit?principal=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        )
        .await;
    assert_page(&reply, StatusCode::OK, "an audit filter with markup");
    assert!(!reply.text.contains("<script>alert"), "{}", reply.text);
}

#[tokio::test]
async fn a_refused_action_from_the_dashboard_carries_the_apis_message_and_hints() {
    let h = Harness::new().await;
    let session = sign_in(&h, &h.tokens.developer).await;
    // What the canary form sends, with the session and its CSRF token.
    let reply = session
        .act(
            &h,
            Method::POST,
            "/api/deploy-safety/canary/start",
            Some(json!({"environment": "production", "releaseId": "v9.9.9",
                        "deploymentId": "prod-1"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["error"]["code"], "blocked_by_security_gate", "{body}");
    assert_eq!(body["error"]["reason"], "OVERRIDE_REQUIRED", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("explicit override")),
        "{body}"
    );
    let hints = body["error"]["hints"].as_array().unwrap();
    assert!(!hints.is_empty(), "{body}");
    // The same words as a bearer token gets.
    let (_, by_token) = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            json!({"environment": "production", "releaseId": "v9.9.9", "deploymentId": "prod-1"}),
        )
        .await;
    assert_eq!(by_token["error"]["message"], body["error"]["message"]);
    assert_eq!(by_token["error"]["hints"], body["error"]["hints"]);
    // The refusal is recorded under the person's name, through the session.
    let denied = h.audit("action=deploy.canary.start&decision=denied").await;
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(denied.iter().all(|e| e["principal"] == "developer"));
    let mut by: Vec<&str> = denied
        .iter()
        .map(|e| e["details"]["authenticatedBy"].as_str().unwrap())
        .collect();
    by.sort_unstable();
    assert_eq!(by, ["token", "token-session"], "{denied:?}");
}

#[tokio::test]
async fn the_audit_page_filters_and_verifies() {
    let h = Harness::new().await;
    h.set_mode("monitor", Some("INC-3 noisy alerts")).await;
    h.set_mode("enforce", None).await;
    let session = sign_in(&h, &h.tokens.developer).await;

    let all = session.get(&h, "/ui/audit").await;
    assert_page(&all, StatusCode::OK, "/ui/audit");
    let actions: Vec<String> = audit_rows(&all.text).into_iter().map(|r| r.1).collect();
    for action in [MODE_ACTION, "token.create", "auth.login"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }

    let filtered = session
        .get(&h, &format!("/ui/audit?action={MODE_ACTION}"))
        .await;
    assert_page(&filtered, StatusCode::OK, "a filtered audit page");
    let rows = audit_rows(&filtered.text);
    let expected: Vec<u64> = h
        .audit(&format!("action={MODE_ACTION}"))
        .await
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        expected,
        "the API's entries, newest first"
    );
    assert!(rows.iter().all(|(_, a)| a == MODE_ACTION), "{rows:?}");
    // The filter form keeps what was asked for; empty fields mean "any".
    assert!(
        filtered.text.contains(&format!(
            r#"name="action" type="text" value="{MODE_ACTION}""#
        )),
        "{}",
        filtered.text
    );
    let empty_fields = session
        .get(
            &h,
            &format!("/ui/audit?principal=&action={MODE_ACTION}&decision=&environment="),
        )
        .await;
    assert_eq!(empty_fields.status, StatusCode::OK, "{}", empty_fields.text);
    assert_eq!(audit_rows(&empty_fields.text), rows);
    let nothing = session.get(&h, "/ui/audit?action=no.such.action").await;
    assert_eq!(nothing.status, StatusCode::OK);
    assert!(audit_rows(&nothing.text).is_empty());
    assert!(nothing.text.contains("No entry matches."));

    let verified = session
        .get(&h, &format!("/ui/audit?action={MODE_ACTION}&verify=1"))
        .await;
    assert_page(&verified, StatusCode::OK, "verify");
    let result = region(&verified.text, "div", "verify-result");
    assert!(result.contains("Chain verified"), "{result}");
    assert!(result.contains(r#"class="verified""#), "{result}");
    assert_eq!(
        audit_rows(&verified.text),
        rows,
        "verifying keeps the filter"
    );
    assert!(
        !all.text.contains(r#"id="verify-result""#),
        "no result unless asked"
    );
}

#[tokio::test]
async fn the_audit_page_shows_fifty_entries_a_page_and_links_the_older_ones() {
    let h = Harness::new().await;
    for i in 0..60 {
        let release = format!("v1.0.{i}");
        h.check(
            &h.tokens.developer,
            "deploy.canary.start",
            "staging",
            Some(&release),
        )
        .await;
    }
    let session = sign_in(&h, &h.tokens.developer).await;
    let expected: Vec<u64> = h
        .audit("action=security-gate.check&limit=1000")
        .await
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(expected.len(), 60);

    let first = session
        .get(&h, "/ui/audit?action=security-gate.check")
        .await;
    assert_page(&first, StatusCode::OK, "the first page");
    let first_rows: Vec<u64> = audit_rows(&first.text).iter().map(|r| r.0).collect();
    assert_eq!(first_rows, expected[..50], "the newest fifty");
    let next = tags(&first.text)
        .into_iter()
        .find(|t| t.name == "a" && t.attribute("id") == Some("next-page"))
        .and_then(|t| t.attribute("href").map(|h| h.replace("&amp;", "&")))
        .unwrap_or_else(|| panic!("an older page: {}", first.text));
    assert!(next.starts_with("/ui/audit?"), "{next}");
    assert!(
        next.contains("action=security-gate.check"),
        "the filter goes on: {next}"
    );

    let second = session.get(&h, &next).await;
    assert_page(&second, StatusCode::OK, &next);
    let second_rows: Vec<u64> = audit_rows(&second.text).iter().map(|r| r.0).collect();
    assert_eq!(second_rows, expected[50..], "the ten older ones");
    assert!(
        !second.text.contains(r#"id="next-page""#),
        "the last page links no older one"
    );
}

#[tokio::test]
async fn an_invalid_audit_filter_is_a_400_page_naming_the_field() {
    let h = Harness::new().await;
    let session = sign_in(&h, &h.tokens.developer).await;
    for (query, field) in [
        ("decision=bogus", "decision"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("cursor=-1", "cursor"),
        ("bogus=1", "bogus"),
        ("since=yesterday", "since"),
    ] {
        let path = format!("/ui/audit?{query}");
        let reply = session.get(&h, &path).await;
        assert_page(&reply, StatusCode::BAD_REQUEST, &path);
        let alert = region(&reply.text, "main", "main");
        assert!(alert.contains(r#"role="alert""#), "{path}: {}", reply.text);
        assert!(
            alert.contains(field),
            "{path}: the page names `{field}`: {alert}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Overrides and requests awaiting a vote
// ---------------------------------------------------------------------------------------------

/// The time left as the page writes it at first (the script counts down from there).
fn left_of(html: &str, id: &str) -> (String, i64) {
    let start = html
        .find(&format!(r#"data-override-id="{id}""#))
        .unwrap_or_else(|| panic!("no override {id} in {html}"));
    let span = tags(&html[start..])
        .into_iter()
        .find(|t| t.name == "span" && t.attribute("class") == Some("left"))
        .unwrap();
    let expires_at: i64 = span.attribute("data-expires-at").unwrap().parse().unwrap();
    let rest = &html[start + span.end..];
    (rest[..rest.find("</span>").unwrap()].to_owned(), expires_at)
}

#[tokio::test]
async fn the_overrides_page_lists_active_overrides_with_their_time_left() {
    let h = Harness::new().await;
    let session = sign_in(&h, &h.tokens.oncall).await;
    let empty = session.get(&h, "/ui/overrides").await;
    assert_page(&empty, StatusCode::OK, "/ui/overrides");
    assert!(empty.text.contains("No override is active."));

    let created = h
        .create_override(
            &h.tokens.eng_lead,
            json!({"action": "deploy.canary.start", "environment": "production",
                   "reason": "CHG-1234: <b>hotfix</b>", "ttlMinutes": 60}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let expires_at = Timestamp::parse_rfc3339(created["expiresAt"].as_str().unwrap()).unwrap();

    let page = session.get(&h, "/ui/overrides").await;
    assert_page(&page, StatusCode::OK, "/ui/overrides");
    assert!(page.text.contains(&format!(r#"data-override-id="{id}""#)));
    let (left, at) = left_of(&page.text, id);
    assert_eq!(left, "1 h 0 min left");
    assert_eq!(at, expires_at.unix_millis());
    assert!(page.text.contains("CHG-1234: &lt;b&gt;hotfix&lt;/b&gt;"));
    assert!(!page.text.contains("<b>hotfix"));
    assert!(
        page.text.contains(&format!(
            r#"data-api="/api/deploy-safety/security-gate/override/{id}" data-method="DELETE""#
        )),
        "its revoke form posts to the API: {}",
        page.text
    );

    h.clock.advance_minutes(15);
    let page = session.get(&h, "/ui/overrides").await;
    assert_eq!(left_of(&page.text, id).0, "45 min 0 s left");
    h.clock.advance_millis(44 * 60_000 + 51_000);
    let page = session.get(&h, "/ui/overrides").await;
    assert_eq!(left_of(&page.text, id).0, "9 s left");

    // Revoked through the API by its approver (as its form does): no longer listed.
    let lead = sign_in(&h, &h.tokens.eng_lead).await;
    let reply = lead
        .act(
            &h,
            Method::DELETE,
            &format!("/api/deploy-safety/security-gate/override/{id}"),
            None,
        )
        .await;
    assert!(reply.status.is_success(), "{reply:?}");
    let page = lead.get(&h, "/ui/overrides").await;
    assert!(!page.text.contains(&format!(r#"data-override-id="{id}""#)));
    assert!(page.text.contains("No override is active."));
}

fn approval_settings() -> AppSettings {
    let environments = Environments::built_in();
    let rule = ApprovalRule {
        actions: vec![Action::CanaryStart],
        environments: vec![EnvironmentSelector::parse("tier:production").unwrap()],
        required: 2,
        approver_roles: vec![Role::EngLead, Role::SecurityTeam],
    };
    AppSettings {
        approvals: ApprovalPolicy::new(vec![rule], &environments).unwrap(),
        environments,
        ..AppSettings::default()
    }
}

/// Whether the overrides page shows `request` to `session` as awaiting their vote (with the
/// vote forms), or among the others (without them); `None` when it is not there at all.
async fn shown_as(h: &Harness, session: &Session, request: &str) -> Option<&'static str> {
    let page = session.get(h, "/ui/overrides").await;
    assert_page(&page, StatusCode::OK, "/ui/overrides");
    let requests = region(&page.text, "section", "requests");
    let marker = format!(r#"data-request-id="{request}""#);
    let (awaiting, others) = requests
        .split_once("<h3>Other pending requests</h3>")
        .unwrap_or((requests, ""));
    match (awaiting.contains(&marker), others.contains(&marker)) {
        (true, false) => {
            assert!(awaiting.contains(r#"class="approve""#), "{awaiting}");
            assert!(
                awaiting.contains(&format!(
                    r#"data-api="/api/deploy-safety/security-gate/override-requests/{request}/approve""#
                )),
                "{awaiting}"
            );
            Some("awaiting")
        }
        (false, true) => {
            assert!(!others.contains(r#"class="approve""#), "{others}");
            assert!(awaiting.contains("Nothing awaits your vote."), "{awaiting}");
            Some("other")
        }
        (false, false) => None,
        (true, true) => panic!("shown twice: {requests}"),
    }
}

#[tokio::test]
async fn requests_await_the_vote_of_eligible_approvers_other_than_the_requester() {
    let h = Harness::with_app_settings(HttpSettings::default(), approval_settings()).await;
    let security_2 = h.token("security-team-2", Role::SecurityTeam).await;
    let requester = sign_in(&h, &h.tokens.eng_lead).await;
    let lead_2 = sign_in(&h, &h.tokens.eng_lead_2).await;
    let security = sign_in(&h, &h.tokens.security).await;
    let security_2 = sign_in(&h, &security_2).await;
    let oncall = sign_in(&h, &h.tokens.oncall).await;

    // The eng-lead asks through the API, as the page's form does.
    let reply = requester
        .act(
            &h,
            Method::POST,
            "/api/deploy-safety/security-gate/override-requests",
            Some(
                json!({"action": "deploy.canary.start", "environment": "production",
                        "releaseId": "v1.2.3", "reason": "CHG-2001: checkout hotfix",
                        "ttlMinutes": 30}),
            ),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let id = reply.json()["id"].as_str().unwrap().to_owned();

    assert_eq!(
        shown_as(&h, &requester, &id).await,
        Some("other"),
        "the requester"
    );
    assert_eq!(
        shown_as(&h, &oncall, &id).await,
        Some("other"),
        "not an approver role"
    );
    assert_eq!(shown_as(&h, &lead_2, &id).await, Some("awaiting"));
    assert_eq!(shown_as(&h, &security, &id).await, Some("awaiting"));
    assert_eq!(shown_as(&h, &security_2, &id).await, Some("awaiting"));

    // The second eng-lead approves: their vote is in, the others' still awaited.
    let reply = lead_2
        .act(
            &h,
            Method::POST,
            &format!("/api/deploy-safety/security-gate/override-requests/{id}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        shown_as(&h, &lead_2, &id).await,
        Some("other"),
        "voted already"
    );
    assert_eq!(shown_as(&h, &security, &id).await, Some("awaiting"));
    let page = security.get(&h, "/ui/overrides").await.text;
    assert!(
        region(&page, "section", "requests").contains("Approvals: 1 of 2 (eng-lead-2)"),
        "{page}"
    );

    // The last approval makes the override: the request is no longer pending, the override
    // is listed.
    let reply = security
        .act(
            &h,
            Method::POST,
            &format!("/api/deploy-safety/security-gate/override-requests/{id}/approve"),
            Some(json!({"comment": "ok"})),
        )
        .await;
    assert!(reply.status.is_success(), "{reply:?}");
    assert_eq!(shown_as(&h, &security_2, &id).await, None);
    let page = security_2.get(&h, "/ui/overrides").await.text;
    let overrides = h.all_overrides().await;
    assert_eq!(overrides.len(), 1, "{overrides:?}");
    let override_id = overrides[0]["id"].as_str().unwrap();
    assert!(page.contains(&format!(r#"data-override-id="{override_id}""#)));
    assert_eq!(left_of(&page, override_id).0, "30 min 0 s left");
}

// ---------------------------------------------------------------------------------------------
// The API beside the dashboard
// ---------------------------------------------------------------------------------------------

/// The dashboard's catch-all is for `/ui/…`: an unknown API path is still the API's JSON 404.
#[tokio::test]
async fn unknown_api_paths_stay_json_errors_beside_the_dashboard() {
    let h = Harness::new().await;
    let token = format!("Bearer {}", h.tokens.security);
    for method in [Method::GET, Method::POST, Method::DELETE] {
        for path in [
            format!("{API}/nope"),
            format!("{API}/security-gate"),
            format!("{API}/ui/"),
        ] {
            let reply = request(
                &h,
                method.clone(),
                &path,
                &[("authorization", &token)],
                None,
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{method} {path}: {reply:?}"
            );
            assert!(
                header_of(&reply, "content-type").starts_with("application/json"),
                "{method} {path}: {reply:?}"
            );
            assert_eq!(
                reply.json()["error"]["code"],
                "not_found",
                "{method} {path}"
            );
        }
    }
}
