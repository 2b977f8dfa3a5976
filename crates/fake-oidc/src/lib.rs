//! A real OpenID Connect provider on 127.0.0.1, for tests.
//!
//! deploy-safety trusts two kinds of OIDC tokens: workload identity JWTs that CI pipelines send as
//! `Authorization: Bearer`, verified against the issuer's discovery document and JWKS, and ID
//! tokens from the authorization code flow (PKCE S256, state, nonce, client secret) that sign
//! people in. Each failure of that trust — an unknown key, a rotated key, a lying discovery
//! document, an issuer that is down or never answers, a forged or tampered token — must be tested
//! against a server that speaks the real protocol over real HTTP. [`FakeProvider`] is that server:
//!
//! - `GET /.well-known/openid-configuration` — the discovery document (its `issuer` can lie:
//!   [`FakeProvider::set_discovery_issuer`]);
//! - `GET /jwks` — every published RSA key ([`FakeProvider::rotate_key`],
//!   [`FakeProvider::retire_old_keys`]);
//! - `GET /authorize` — auto-consent sign-in of the user set by [`FakeProvider::set_user`],
//!   answering with a redirect that carries a single-use code;
//! - `POST /token` — client authentication, code redemption with PKCE, and the ID token
//!   (which [`FakeProvider::tamper_next_id_token`] can spoil).
//!
//! Switches make the provider unavailable (503) or hanging (discovery and JWKS never answer), and
//! the `sign*` methods mint workload tokens, good and forged. Keys are RSA-2048 made by the
//! `openssl` command line at start and at each rotation; nothing is stored on disk.
//!
//! ```no_run
//! # async fn example() {
//! let provider = deploy_safety_fake_oidc::FakeProvider::start().await;
//! let jwt = provider.sign(&serde_json::json!({
//!     "iss": provider.issuer(), "aud": "deploy-safety", "sub": "repo:acme/web",
//!     "iat": 1_700_000_000, "exp": 1_700_000_300,
//! }));
//! # }
//! ```

// Test support: a poisoned lock or a failed openssl run should fail the test loudly, right there.
#![allow(clippy::unwrap_used)]

mod http;
mod keys;

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::keys::RsaKey;

/// A running OpenID Connect provider on `127.0.0.1:<random port>`.
///
/// Cheap to clone: clones share one server. The server stops when the last clone is dropped, or
/// at [`FakeProvider::shutdown`].
#[derive(Clone)]
pub struct FakeProvider {
    handle: Arc<Handle>,
}

/// Owned by the `FakeProvider` clones only — the server task holds [`Shared`] instead — so that
/// dropping the last clone drops this and stops the server.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

impl fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeProvider")
            .field("issuer", &self.handle.shared.issuer)
            .field("current_kid", &self.current_kid())
            .finish_non_exhaustive()
    }
}

/// A fault planted in the next ID token the token endpoint issues, for
/// [`FakeProvider::tamper_next_id_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenTamper {
    /// `nonce` differs from the one the authorization request sent.
    WrongNonce,
    /// `aud` names another client.
    WrongAudience,
    /// `iss` names another issuer.
    WrongIssuer,
    /// `exp` (and `iat`) an hour in the past, beyond any clock-skew leeway.
    Expired,
    /// Signed by a key the provider never published, under the current `kid`.
    ForeignSignature,
    /// No `nonce` claim although the authorization request sent one.
    MissingNonce,
}

/// A request the token endpoint received, whatever its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `grant_type` form field ("" if absent).
    pub grant_type: String,
    /// The `code` form field ("" if absent).
    pub code: String,
    /// The `redirect_uri` form field ("" if absent).
    pub redirect_uri: String,
    /// The PKCE `code_verifier` form field.
    pub code_verifier: Option<String>,
    /// The client the request claimed to be, from HTTP Basic or the `client_id` field ("" if none).
    pub client_id: String,
    /// Whether the client proved its secret.
    pub client_authenticated: bool,
    /// `"ok"`, or the OAuth error code answered (`invalid_client`, `invalid_grant`, ...).
    pub outcome: String,
}

/// A request the authorization endpoint received, whatever its outcome. Absent parameters read "".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_type: String,
    pub scope: String,
    pub state: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// What the HTTP handlers and the `FakeProvider` methods share.
pub(crate) struct Shared {
    pub(crate) issuer: String,
    keys: Mutex<KeyRing>,
    /// Never published: signs the forgeries of `sign_with_foreign_key` and `ForeignSignature`.
    foreign_key: RsaKey,
    pub(crate) available: AtomicBool,
    pub(crate) hanging: watch::Sender<bool>,
    /// Set true to stop the server; hanging requests watch it too, to let go at shutdown.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Becomes true once the listening socket is closed.
    stopped: watch::Sender<bool>,
    pub(crate) discovery_issuer: Mutex<Option<String>>,
    pub(crate) discovery_fetches: AtomicUsize,
    pub(crate) jwks_fetches: AtomicUsize,
    pub(crate) sso: Mutex<Sso>,
}

/// The published keys; the last one is current.
struct KeyRing {
    published: Vec<Arc<RsaKey>>,
    /// Keys generated so far, to number the kids.
    generated: usize,
}

/// The state of the authorization code flow.
#[derive(Default)]
pub(crate) struct Sso {
    pub(crate) clients: HashMap<String, Client>,
    pub(crate) user: Option<Map<String, Value>>,
    now: Option<i64>,
    pub(crate) tamper: Option<IdTokenTamper>,
    /// Codes issued and not yet presented, by code.
    pub(crate) codes: HashMap<String, Grant>,
    pub(crate) token_requests: Vec<TokenRequest>,
    pub(crate) authorize_requests: Vec<AuthorizeRequest>,
}

impl Sso {
    /// The provider's clock: the injected time, else the system's.
    pub(crate) fn now(&self) -> i64 {
        self.now.unwrap_or_else(|| {
            let since_epoch = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("system clock before 1970");
            i64::try_from(since_epoch.as_secs()).expect("system clock beyond year 292 billion")
        })
    }
}

pub(crate) struct Client {
    pub(crate) secret: String,
    pub(crate) redirect_uris: Vec<String>,
}

/// What an authorization code stands for.
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: String,
    pub(crate) nonce: Option<String>,
    pub(crate) scope: String,
    pub(crate) user: Map<String, Value>,
    pub(crate) auth_time: i64,
}

impl Shared {
    pub(crate) fn current_key(&self) -> Arc<RsaKey> {
        let ring = self.keys.lock().unwrap();
        Arc::clone(
            ring.published
                .last()
                .expect("a provider always has a current key"),
        )
    }

    pub(crate) fn published_keys(&self) -> Vec<Arc<RsaKey>> {
        self.keys.lock().unwrap().published.clone()
    }

    /// Signs with the unpublished key, under the current kid.
    pub(crate) fn sign_foreign(&self, claims: &Value) -> String {
        self.foreign_key
            .sign(&rs256_header(self.current_key().kid.clone()), claims)
    }
}

/// `{alg: RS256, typ: JWT, kid}`, the header of every honest token.
pub(crate) fn rs256_header(kid: String) -> Header {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".to_owned());
    header.kid = Some(kid);
    header
}

/// `bytes` random bytes, base64url: for codes, access tokens and kids.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("no system randomness");
    URL_SAFE_NO_PAD.encode(buf)
}

/// A kid that is unique across providers and rotations: the sequence number helps humans reading
/// test output, the random part keeps two providers' kids apart.
fn new_kid(sequence: usize) -> String {
    format!("fake-{sequence}-{}", random_token(6))
}

/// The TCP listener, announcing when it is dropped — i.e. when axum has stopped accepting, so
/// connecting is refused from then on.
struct ClosingListener {
    inner: TcpListener,
    stopped: watch::Sender<bool>,
}

impl Drop for ClosingListener {
    fn drop(&mut self) {
        self.stopped.send_replace(true);
    }
}

impl axum::serve::Listener for ClosingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        axum::serve::Listener::accept(&mut self.inner).await
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl FakeProvider {
    /// Binds 127.0.0.1 on a free port, generates the first key, and serves on the current tokio
    /// runtime until the last clone is dropped or [`FakeProvider::shutdown`].
    ///
    /// # Panics
    /// Outside a tokio runtime, when binding fails, or when the `openssl` command is missing.
    pub async fn start() -> FakeProvider {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("cannot bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();

        // Two keys, generated in parallel off the runtime's threads.
        let (current, foreign) = tokio::join!(
            tokio::task::spawn_blocking(|| RsaKey::generate(new_kid(1))),
            tokio::task::spawn_blocking(|| RsaKey::generate("foreign".to_owned())),
        );
        let (current, foreign) = (current.unwrap(), foreign.unwrap());

        let shared = Arc::new(Shared {
            issuer: format!("http://127.0.0.1:{port}"),
            keys: Mutex::new(KeyRing {
                published: vec![Arc::new(current)],
                generated: 1,
            }),
            foreign_key: foreign,
            available: AtomicBool::new(true),
            hanging: watch::Sender::new(false),
            shutdown: watch::Sender::new(false),
            stopped: watch::Sender::new(false),
            discovery_issuer: Mutex::new(None),
            discovery_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            sso: Mutex::new(Sso::default()),
        });

        let listener = ClosingListener {
            inner: listener,
            stopped: shared.stopped.clone(),
        };
        let mut shutdown = shared.shutdown.subscribe();
        let server = axum::serve(listener, http::router(Arc::clone(&shared)))
            .with_graceful_shutdown(async move {
                // Err only if the sender is gone, which also means: stop.
                let _ = shutdown.wait_for(|stop| *stop).await;
            });
        tokio::spawn(async move {
            // Serving on a bound listener does not fail; if it did, requests fail visibly.
            let _ = server.await;
        });

        FakeProvider {
            handle: Arc::new(Handle { shared }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Stops the server: the listener closes (new connections are refused), hanging requests are
    /// let go with a 503, and open connections close once their response is sent. Returns at once;
    /// the socket closes moments later — await [`FakeProvider::shutdown_and_wait`] to be sure.
    pub fn shutdown(&self) {
        self.shared().shutdown.send_replace(true);
    }

    /// [`FakeProvider::shutdown`], then waits until the listening socket is closed.
    pub async fn shutdown_and_wait(&self) {
        self.shutdown();
        let mut stopped = self.shared().stopped.subscribe();
        // Err only if the sender is gone, which means the listener was dropped as well.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn issuer(&self) -> String {
        self.shared().issuer.clone()
    }

    /// The issuer's `/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}{}", self.shared().issuer, http::DISCOVERY_PATH)
    }

    /// The issuer's `/jwks`, which the discovery document names as `jwks_uri`.
    pub fn jwks_url(&self) -> String {
        format!("{}{}", self.shared().issuer, http::JWKS_PATH)
    }

    /// The kid of the key that signs from now on.
    pub fn current_kid(&self) -> String {
        self.shared().current_key().kid.clone()
    }

    /// The current public key as SPKI PEM — what [`FakeProvider::sign_hs256_with_public_key`]
    /// uses as its HMAC secret.
    pub fn current_public_key_pem(&self) -> String {
        self.shared().current_key().public_pem.clone()
    }

    /// An RS256 JWT signed with the current key, header `{alg: RS256, typ: "JWT", kid}`. The
    /// claims are exactly `claims`: the caller sets iss, aud, exp, iat and the rest.
    pub fn sign(&self, claims: &Value) -> String {
        let key = self.shared().current_key();
        key.sign(&rs256_header(key.kid.clone()), claims)
    }

    /// A JWT under a caller-built header (wrong typ, missing or unknown kid, RS384...), signed
    /// with the current key.
    ///
    /// # Panics
    /// When `header.alg` is not an RSA algorithm (RS256/384/512, PS256/384/512).
    pub fn sign_with_header(&self, header: Header, claims: &Value) -> String {
        self.shared().current_key().sign(&header, claims)
    }

    /// The key-confusion attack: an HS256 JWT whose HMAC secret is the current public key's PEM
    /// (as [`FakeProvider::current_public_key_pem`] returns it), header kid = current kid. A
    /// verifier that lets the token pick the algorithm would accept it.
    pub fn sign_hs256_with_public_key(&self, claims: &Value) -> String {
        let key = self.shared().current_key();
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(key.kid.clone());
        let secret = EncodingKey::from_secret(key.public_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &secret).unwrap()
    }

    /// An unsecured JWT: header `{"alg":"none","typ":"JWT","kid":<current>}`, empty signature
    /// (the token ends with a dot).
    pub fn unsigned(&self, claims: &Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.current_kid()});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    /// An RS256 JWT signed by a key the provider never published, under the current kid: the
    /// signature must not verify.
    pub fn sign_with_foreign_key(&self, claims: &Value) -> String {
        self.shared().sign_foreign(claims)
    }

    /// Generates a new current key with a new kid and publishes it; the old keys stay published
    /// until [`FakeProvider::retire_old_keys`]. Blocks for the key generation (a few hundred ms).
    /// Returns the new kid.
    pub fn rotate_key(&self) -> String {
        let sequence = {
            let mut ring = self.shared().keys.lock().unwrap();
            ring.generated += 1;
            ring.generated
        };
        // Generated outside the lock: the server keeps answering meanwhile.
        let key = Arc::new(RsaKey::generate(new_kid(sequence)));
        let kid = key.kid.clone();
        self.shared().keys.lock().unwrap().published.push(key);
        kid
    }

    /// Unpublishes every key but the current one.
    pub fn retire_old_keys(&self) {
        let mut ring = self.shared().keys.lock().unwrap();
        let current = ring
            .published
            .pop()
            .expect("a provider always has a current key");
        ring.published = vec![current];
    }

    /// `false`: every endpoint answers 503 Service Unavailable until set `true` again.
    pub fn set_available(&self, available: bool) {
        self.shared().available.store(available, Ordering::SeqCst);
    }

    /// `true`: discovery and JWKS requests get no answer — the connection stays open — until set
    /// `false` (then they are answered normally) or shutdown (then 503). For testing that a
    /// client bounds its wait.
    pub fn set_hanging(&self, hanging: bool) {
        self.shared().hanging.send_replace(hanging);
    }

    /// `Some(x)`: the discovery document's `issuer` says `x` (a lying discovery document); the
    /// endpoint URLs in it stay true. `None`: the real issuer.
    pub fn set_discovery_issuer(&self, issuer: Option<String>) {
        *self.shared().discovery_issuer.lock().unwrap() = issuer;
    }

    /// JWKS requests received, including those answered 503 or held by hanging.
    pub fn jwks_fetches(&self) -> usize {
        self.shared().jwks_fetches.load(Ordering::SeqCst)
    }

    /// Discovery requests received, including those answered 503 or held by hanging.
    pub fn discovery_fetches(&self) -> usize {
        self.shared().discovery_fetches.load(Ordering::SeqCst)
    }

    /// Registers a confidential client for /authorize and /token. Registering an id again
    /// replaces its secret and adds `redirect_uri` to its registered URIs, which /authorize
    /// compares exactly.
    pub fn register_client(&self, client_id: &str, client_secret: &str, redirect_uri: &str) {
        let mut sso = self.shared().sso.lock().unwrap();
        let client = sso
            .clients
            .entry(client_id.to_owned())
            .or_insert_with(|| Client {
                secret: String::new(),
                redirect_uris: Vec::new(),
            });
        client_secret.clone_into(&mut client.secret);
        if !client.redirect_uris.iter().any(|uri| uri == redirect_uri) {
            client.redirect_uris.push(redirect_uri.to_owned());
        }
    }

    /// The person who signs in (with automatic consent) at /authorize from now on; these claims
    /// go into their ID tokens, e.g. `{"sub":"u1","email":"alice@example.com","groups":["eng"]}`.
    /// Until set, /authorize answers `access_denied`.
    ///
    /// # Panics
    /// When `claims` is not a JSON object.
    pub fn set_user(&self, claims: Value) {
        let Value::Object(claims) = claims else {
            panic!("set_user takes a JSON object of claims, not {claims}");
        };
        self.shared().sso.lock().unwrap().user = Some(claims);
    }

    /// The Unix time, in seconds, of sign-ins (`auth_time`) and ID tokens (`iat`, `exp` = +300)
    /// from now on; by default the system clock. Signed workload tokens are unaffected: their
    /// caller sets their times.
    pub fn set_now(&self, unix_seconds: i64) {
        self.shared().sso.lock().unwrap().now = Some(unix_seconds);
    }

    /// Spoils the next ID token the token endpoint issues (then the fault is cleared).
    pub fn tamper_next_id_token(&self, tamper: IdTokenTamper) {
        self.shared().sso.lock().unwrap().tamper = Some(tamper);
    }

    /// Every request the token endpoint received, in order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared().sso.lock().unwrap().token_requests.clone()
    }

    /// Every request the authorization endpoint received, in order.
    pub fn authorize_requests(&self) -> Vec<AuthorizeRequest> {
        self.shared().sso.lock().unwrap().authorize_requests.clone()
    }
}
