//! The fake provider, driven over real HTTP as a relying party would.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use deploy_safety_fake_oidc::{FakeProvider, IdTokenTamper};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CLIENT_ID: &str = "deploy-safety";
const CLIENT_SECRET: &str = "s3cret";
const REDIRECT_URI: &str = "http://127.0.0.1:9/sso/callback";

fn http() -> reqwest::Client {
    // Redirects are the answers under test, not detours.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn workload_claims(provider: &FakeProvider) -> Value {
    json!({
        "iss": provider.issuer(),
        "aud": "deploy-safety",
        "sub": "repo:acme/web:ref:refs/heads/main",
        "iat": now(),
        "exp": now() + 300,
    })
}

async fn get_json(url: &str) -> Value {
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    response.json().await.unwrap()
}

async fn jwks(provider: &FakeProvider) -> JwkSet {
    serde_json::from_value(get_json(&provider.jwks_url()).await).unwrap()
}

/// Verifies `token` as a relying party would: key by kid from the JWKS, RS256 only.
async fn verify(provider: &FakeProvider, token: &str, audience: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let set = jwks(provider).await;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("unknown kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[provider.issuer()]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

async fn sso_provider() -> FakeProvider {
    let provider = FakeProvider::start().await;
    provider.register_client(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI);
    provider.set_user(json!({"sub": "u1", "email": "alice@example.com", "groups": ["eng-leads"]}));
    provider
}

/// GET /authorize with `params`; returns the status and the Location header, if any.
async fn authorize(
    provider: &FakeProvider,
    params: &[(&str, &str)],
) -> (StatusCode, Option<String>) {
    let response = http()
        .get(format!("{}/authorize", provider.issuer()))
        .query(params)
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|value| value.to_str().unwrap().to_owned());
    (response.status(), location)
}

/// The query parameters of a redirect Location.
fn query_of(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// A good authorization request; returns the code.
async fn code_for(provider: &FakeProvider, challenge: &str, nonce: &str) -> String {
    let (status, location) = authorize(
        provider,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid email"),
            ("state", "st-1"),
            ("nonce", nonce),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = location.unwrap();
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    let query = query_of(&location);
    assert_eq!(param(&query, "state").as_deref(), Some("st-1"));
    param(&query, "code").expect("a code")
}

/// POST /token with a form body and optional Basic credentials (form-urlencoded per RFC 6749).
async fn token(
    provider: &FakeProvider,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = http()
        .post(format!("{}/token", provider.issuer()))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body);
    if let Some((id, secret)) = basic {
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = STANDARD.encode(format!("{}:{}", encode(id), encode(secret)));
        request = request.header(AUTHORIZATION, format!("Basic {credentials}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

fn redemption<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier),
    ]
}

#[tokio::test]
async fn discovery_document_describes_the_provider() {
    let provider = FakeProvider::start().await;
    let issuer = provider.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:") && !issuer.ends_with('/'));
    let document = get_json(&format!("{issuer}/.well-known/openid-configuration")).await;
    assert_eq!(document["issuer"], json!(issuer));
    assert_eq!(
        document["authorization_endpoint"],
        json!(format!("{issuer}/authorize"))
    );
    assert_eq!(document["token_endpoint"], json!(format!("{issuer}/token")));
    assert_eq!(document["jwks_uri"], json!(provider.jwks_url()));
    assert_eq!(document["response_types_supported"], json!(["code"]));
    assert_eq!(document["subject_types_supported"], json!(["public"]));
    assert_eq!(
        document["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(
        document["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        document["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert!(
        document["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("openid"))
    );
    assert!(
        document["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("authorization_code"))
    );
    assert!(
        document["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("nonce"))
    );
    assert_eq!(provider.discovery_fetches(), 1);

    // A lying discovery document changes only its issuer.
    provider.set_discovery_issuer(Some("https://evil.example".to_owned()));
    let document = get_json(&provider.discovery_url()).await;
    assert_eq!(document["issuer"], json!("https://evil.example"));
    assert_eq!(document["jwks_uri"], json!(provider.jwks_url()));
    provider.set_discovery_issuer(None);
    let document = get_json(&provider.discovery_url()).await;
    assert_eq!(document["issuer"], json!(issuer));
    assert_eq!(provider.discovery_fetches(), 3);
}

#[tokio::test]
async fn published_keys_verify_signed_tokens_and_reject_forgeries() {
    let provider = FakeProvider::start().await;
    let document = get_json(&provider.jwks_url()).await;
    let key = &document["keys"][0];
    assert_eq!(document["keys"].as_array().unwrap().len(), 1);
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["e"], "AQAB");
    assert_eq!(key["kid"], json!(provider.current_kid()));
    // 2048 bits: 256 bytes, 342 base64url characters, no padding.
    let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
    assert_eq!(n.len(), 256);
    assert_ne!(n[0], 0);

    let claims = workload_claims(&provider);
    let token = provider.sign(&claims);
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.kid, Some(provider.current_kid()));
    assert_eq!(
        verify(&provider, &token, "deploy-safety").await.unwrap(),
        claims
    );
    assert_eq!(provider.jwks_fetches(), 2);

    let foreign = provider.sign_with_foreign_key(&claims);
    assert_eq!(
        jsonwebtoken::decode_header(&foreign).unwrap().kid,
        Some(provider.current_kid())
    );
    assert!(
        verify(&provider, &foreign, "deploy-safety")
            .await
            .unwrap_err()
            .contains("InvalidSignature")
    );

    // Key confusion: a valid HMAC under the public PEM, which an RS256 verifier must refuse.
    let confused = provider.sign_hs256_with_public_key(&claims);
    let header = jsonwebtoken::decode_header(&confused).unwrap();
    assert_eq!(
        (header.alg, header.kid),
        (Algorithm::HS256, Some(provider.current_kid()))
    );
    let pem = provider.current_public_key_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let mut hmac = Validation::new(Algorithm::HS256);
    hmac.set_audience(&["deploy-safety"]);
    jsonwebtoken::decode::<Value>(
        &confused,
        &DecodingKey::from_secret(pem.as_bytes()).unwrap(),
        &hmac,
    )
    .unwrap();
    assert!(verify(&provider, &confused, "deploy-safety").await.is_err());

    // alg none: a header, the claims, an empty signature.
    let unsigned = provider.unsigned(&claims);
    let parts: Vec<&str> = unsigned.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2], "");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"alg": "none", "typ": "JWT", "kid": provider.current_kid()})
    );
    assert!(verify(&provider, &unsigned, "deploy-safety").await.is_err());

    // A caller-built header, still signed with the current key.
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some(provider.current_kid());
    header.typ = Some("at+jwt".to_owned());
    let odd = provider.sign_with_header(header, &claims);
    let decoded = jsonwebtoken::decode_header(&odd).unwrap();
    assert_eq!(
        (decoded.alg, decoded.typ.as_deref()),
        (Algorithm::RS384, Some("at+jwt"))
    );
    let jwk = jwks(&provider).await.keys.remove(0);
    let mut rs384 = Validation::new(Algorithm::RS384);
    rs384.set_audience(&["deploy-safety"]);
    jsonwebtoken::decode::<Value>(&odd, &DecodingKey::from_jwk(&jwk).unwrap(), &rs384).unwrap();
}

#[tokio::test]
async fn rotation_publishes_both_keys_and_retiring_leaves_the_current_one() {
    let provider = FakeProvider::start().await;
    let old_kid = provider.current_kid();
    let old_token = provider.sign(&workload_claims(&provider));

    let new_kid = provider.rotate_key();
    assert_ne!(new_kid, old_kid);
    assert_eq!(provider.current_kid(), new_kid);
    let kids: Vec<_> = jwks(&provider)
        .await
        .keys
        .into_iter()
        .map(|k| k.common.key_id.unwrap())
        .collect();
    assert_eq!(kids, [old_kid.clone(), new_kid.clone()]);
    let new_token = provider.sign(&workload_claims(&provider));
    assert_eq!(
        jsonwebtoken::decode_header(&new_token).unwrap().kid,
        Some(new_kid.clone())
    );
    verify(&provider, &old_token, "deploy-safety")
        .await
        .unwrap();
    verify(&provider, &new_token, "deploy-safety")
        .await
        .unwrap();

    provider.retire_old_keys();
    let kids: Vec<_> = jwks(&provider)
        .await
        .keys
        .into_iter()
        .map(|k| k.common.key_id.unwrap())
        .collect();
    assert_eq!(kids, [new_kid]);
    assert_eq!(
        verify(&provider, &old_token, "deploy-safety")
            .await
            .unwrap_err(),
        "unknown kid"
    );
    verify(&provider, &new_token, "deploy-safety")
        .await
        .unwrap();
}

#[tokio::test]
async fn code_flow_with_pkce_yields_an_id_token_with_the_nonce() {
    let provider = sso_provider().await;
    let issued_at = 1_800_000_000;
    provider.set_now(issued_at);
    let (verifier, challenge) = pkce();
    let code = code_for(&provider, &challenge, "n-0S6_WzA2Mj").await;

    let (status, headers, body) = token(
        &provider,
        &redemption(&code, &verifier),
        Some((CLIENT_ID, CLIENT_SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[CACHE_CONTROL], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert!(body["access_token"].as_str().unwrap().len() >= 32);

    // The injected clock is far in the future: verify the signature and claims, not the time.
    let id_token = body["id_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(
        (header.alg, header.kid),
        (Algorithm::RS256, Some(provider.current_kid()))
    );
    let jwk = jwks(&provider).await.keys.remove(0);
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[provider.issuer()]);
    validation.validate_exp = false;
    let claims =
        jsonwebtoken::decode::<Value>(id_token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["sub"], "u1");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], json!(["eng-leads"]));
    assert_eq!(claims["iat"], issued_at);
    assert_eq!(claims["exp"], issued_at + 300);
    assert_eq!(claims["auth_time"], issued_at);

    let authorized = provider.authorize_requests();
    assert_eq!(authorized.len(), 1);
    assert_eq!(
        authorized[0].code_challenge.as_deref(),
        Some(challenge.as_str())
    );
    assert_eq!(authorized[0].code_challenge_method.as_deref(), Some("S256"));
    assert_eq!(authorized[0].nonce.as_deref(), Some("n-0S6_WzA2Mj"));
    let requests = provider.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].code_verifier.as_deref(),
        Some(verifier.as_str())
    );
    assert_eq!(requests[0].client_id, CLIENT_ID);
    assert!(requests[0].client_authenticated);
    assert_eq!(requests[0].outcome, "ok");
}

#[tokio::test]
async fn client_secret_post_and_url_encoded_basic_credentials_authenticate() {
    let provider = sso_provider().await;
    // A secret that differs once form-urlencoded, and a redirect URI that has a query.
    let redirect = "http://127.0.0.1:9/cb?tenant=a&x=1";
    provider.register_client("odd client", "s:c r&t", redirect);

    let (verifier, challenge) = pkce();
    let (status, location) = authorize(
        &provider,
        &[
            ("response_type", "code"),
            ("client_id", "odd client"),
            ("redirect_uri", redirect),
            ("scope", "openid"),
            ("state", "a b&c"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = location.unwrap();
    assert!(
        location.starts_with(&format!("{redirect}&code=")),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(param(&query, "tenant").as_deref(), Some("a"));
    assert_eq!(param(&query, "state").as_deref(), Some("a b&c"));
    let code = param(&query, "code").unwrap();
    let mut form = redemption(&code, &verifier);
    form[2] = ("redirect_uri", redirect);
    let (status, _, body) = token(&provider, &form, Some(("odd client", "s:c r&t"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // No nonce was sent, so the ID token carries none.
    let payload = body["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert!(claims.get("nonce").is_none());

    // client_secret_post.
    let (verifier, challenge) = pkce();
    let code = code_for(&provider, &challenge, "n").await;
    let mut form = redemption(&code, &verifier);
    form.extend([("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]);
    let (status, _, body) = token(&provider, &form, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_wrong_or_missing_verifier_is_an_invalid_grant() {
    let provider = sso_provider().await;
    let (_, challenge) = pkce();
    let (other_verifier, _) = pkce();
    let code = code_for(&provider, &challenge, "n").await;
    let (status, _, body) = token(
        &provider,
        &redemption(&code, &other_verifier),
        Some((CLIENT_ID, CLIENT_SECRET)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    let code = code_for(&provider, &challenge, "n").await;
    let mut form = redemption(&code, "");
    form.pop();
    let (status, _, body) = token(&provider, &form, Some((CLIENT_ID, CLIENT_SECRET))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    let outcomes: Vec<_> = provider
        .token_requests()
        .into_iter()
        .map(|r| (r.code_verifier, r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Some(other_verifier), "invalid_grant".to_owned()),
            (None, "invalid_grant".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_code_is_single_use() {
    let provider = sso_provider().await;
    let (verifier, challenge) = pkce();
    let code = code_for(&provider, &challenge, "n").await;
    let auth = Some((CLIENT_ID, CLIENT_SECRET));
    let (status, _, _) = token(&provider, &redemption(&code, &verifier), auth).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = token(&provider, &redemption(&code, &verifier), auth).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn token_endpoint_refuses_bad_clients_grants_and_redirects() {
    let provider = sso_provider().await;
    provider.register_client("other", "other-secret", REDIRECT_URI);
    let (verifier, challenge) = pkce();

    let code = code_for(&provider, &challenge, "n").await;
    let (status, headers, body) = token(
        &provider,
        &redemption(&code, &verifier),
        Some((CLIENT_ID, "wrong")),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, body) = token(&provider, &redemption(&code, &verifier), None).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );

    let mut form = redemption(&code, &verifier);
    form[0] = ("grant_type", "client_credentials");
    let (status, _, body) = token(&provider, &form, Some((CLIENT_ID, CLIENT_SECRET))).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("unsupported_grant_type"))
    );

    // The failed client authentications did not use the code up; another client's attempt does.
    let (status, _, body) = token(
        &provider,
        &redemption(&code, &verifier),
        Some(("other", "other-secret")),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );
    let (status, _, body) = token(
        &provider,
        &redemption(&code, &verifier),
        Some((CLIENT_ID, CLIENT_SECRET)),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );

    let code = code_for(&provider, &challenge, "n").await;
    let mut form = redemption(&code, &verifier);
    form[2] = ("redirect_uri", "http://127.0.0.1:9/elsewhere");
    let (status, _, body) = token(&provider, &form, Some((CLIENT_ID, CLIENT_SECRET))).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );

    let outcomes: Vec<_> = provider
        .token_requests()
        .into_iter()
        .map(|r| (r.outcome, r.client_authenticated))
        .collect();
    let expected = [
        ("invalid_client", false),
        ("invalid_client", false),
        ("unsupported_grant_type", true),
        ("invalid_grant", true),
        ("invalid_grant", true),
        ("invalid_grant", true),
    ];
    assert_eq!(outcomes, expected.map(|(o, a)| (o.to_owned(), a)));
}

#[tokio::test]
async fn authorize_refuses_bad_requests() {
    let provider = sso_provider().await;
    let (_, challenge) = pkce();
    let good = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let with = |name: &'static str, value: Option<&'static str>| {
        let mut params: Vec<(&str, &str)> =
            good.iter().copied().filter(|(n, _)| *n != name).collect();
        params.extend(value.map(|value| (name, value)));
        params
    };

    // Nowhere safe to redirect: an error page.
    for params in [
        with("client_id", Some("nobody")),
        with("redirect_uri", Some("http://127.0.0.1:9/evil")),
    ] {
        let (status, location) = authorize(&provider, &params).await;
        assert_eq!((status, location), (StatusCode::BAD_REQUEST, None));
    }
    // Protocol errors: back to the client with the state.
    for params in [
        with("response_type", Some("token")),
        with("scope", Some("email profile")),
        with("code_challenge", None),
        with("code_challenge_method", None),
        with("code_challenge_method", Some("plain")),
    ] {
        let (status, location) = authorize(&provider, &params).await;
        assert_eq!(status, StatusCode::FOUND, "{params:?}");
        let query = query_of(&location.unwrap());
        assert_eq!(
            param(&query, "error").as_deref(),
            Some("invalid_request"),
            "{params:?}"
        );
        assert_eq!(param(&query, "state").as_deref(), Some("st"));
        assert_eq!(param(&query, "code"), None);
    }

    let nobody = FakeProvider::start().await;
    nobody.register_client(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI);
    let (status, location) = authorize(&nobody, &good).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(
        param(&query_of(&location.unwrap()), "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(provider.authorize_requests().len(), 7);
}

#[tokio::test]
async fn tampered_id_tokens_carry_their_fault_once() {
    let provider = sso_provider().await;
    let mut issued = Vec::new();
    for tamper in [
        Some(IdTokenTamper::WrongNonce),
        Some(IdTokenTamper::WrongAudience),
        Some(IdTokenTamper::WrongIssuer),
        Some(IdTokenTamper::Expired),
        Some(IdTokenTamper::ForeignSignature),
        Some(IdTokenTamper::MissingNonce),
        None,
    ] {
        if let Some(tamper) = tamper {
            provider.tamper_next_id_token(tamper);
        }
        let (verifier, challenge) = pkce();
        let code = code_for(&provider, &challenge, "the-nonce").await;
        let (status, _, body) = token(
            &provider,
            &redemption(&code, &verifier),
            Some((CLIENT_ID, CLIENT_SECRET)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let id_token = body["id_token"].as_str().unwrap().to_owned();
        issued.push((
            tamper,
            verify(&provider, &id_token, CLIENT_ID).await,
            id_token,
        ));
    }
    for (tamper, verified, id_token) in issued {
        let payload = id_token.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        match tamper {
            Some(IdTokenTamper::WrongNonce) => {
                verified.unwrap();
                assert_ne!(claims["nonce"], "the-nonce");
            }
            Some(IdTokenTamper::MissingNonce) => {
                verified.unwrap();
                assert!(claims.get("nonce").is_none());
            }
            Some(IdTokenTamper::WrongAudience) => {
                assert!(verified.unwrap_err().contains("InvalidAudience"))
            }
            Some(IdTokenTamper::WrongIssuer) => {
                assert!(verified.unwrap_err().contains("InvalidIssuer"))
            }
            Some(IdTokenTamper::Expired) => {
                assert!(verified.unwrap_err().contains("ExpiredSignature"))
            }
            Some(IdTokenTamper::ForeignSignature) => {
                assert!(verified.unwrap_err().contains("InvalidSignature"))
            }
            None => assert_eq!(verified.unwrap()["nonce"], "the-nonce"),
        }
    }
}

#[tokio::test]
async fn an_unavailable_provider_answers_503_everywhere() {
    let provider = sso_provider().await;
    provider.set_available(false);
    let issuer = provider.issuer();
    for url in [
        provider.discovery_url(),
        provider.jwks_url(),
        format!("{issuer}/authorize?client_id=x"),
    ] {
        assert_eq!(
            http().get(&url).send().await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{url}"
        );
    }
    let response = http().post(format!("{issuer}/token")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        (provider.discovery_fetches(), provider.jwks_fetches()),
        (1, 1)
    );

    provider.set_available(true);
    assert_eq!(
        http()
            .get(provider.jwks_url())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_hanging_provider_makes_bounded_requests_time_out() {
    let provider = FakeProvider::start().await;
    provider.set_hanging(true);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for url in [provider.discovery_url(), provider.jwks_url()] {
        let error = impatient.get(&url).send().await.unwrap_err();
        assert!(error.is_timeout(), "{url}: {error}");
    }
    assert_eq!(
        (provider.discovery_fetches(), provider.jwks_fetches()),
        (1, 1)
    );

    // A held request is answered once the provider stops hanging.
    let held = tokio::spawn(http().get(provider.jwks_url()).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!held.is_finished());
    provider.set_hanging(false);
    assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);

    // Shutdown lets a held request go.
    provider.set_hanging(true);
    let held = tokio::spawn(http().get(provider.discovery_url()).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    provider.shutdown_and_wait().await;
    let answer = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn shutdown_and_drop_close_the_listener() {
    let provider = FakeProvider::start().await;
    let jwks_url = provider.jwks_url();
    assert_eq!(
        http().get(&jwks_url).send().await.unwrap().status(),
        StatusCode::OK
    );
    provider.shutdown_and_wait().await;
    let error = http().get(&jwks_url).send().await.unwrap_err();
    assert!(error.is_connect(), "{error}");

    let provider = FakeProvider::start().await;
    let clone = provider.clone();
    let jwks_url = provider.jwks_url();
    drop(provider);
    // A clone keeps the server alive.
    assert_eq!(
        http().get(&jwks_url).send().await.unwrap().status(),
        StatusCode::OK
    );
    drop(clone);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match http().get(&jwks_url).send().await {
            Err(error) if error.is_connect() => break,
            _ if tokio::time::Instant::now() > deadline => {
                panic!("still serving after the last drop")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
