//! Fixtures of the probe runner tests: a fresh SQLite store in a temporary directory, an `App`
//! on a `ManualClock`, a caller allowed to manage probes, and real local targets on 127.0.0.1:
//! an HTTP server whose behaviour can be switched (answer, fail, answer slowly, hang up) and a
//! TCP listener that can be closed.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use deploy_safety_api_types::{CreateProbeRequest, ProbeView};
use deploy_safety_app::{App, AppSettings, Caller, Clock, ManualClock};
use deploy_safety_core::{ProbeKind, Role, Timestamp};
use deploy_safety_engine::ProbeRunner;
use deploy_safety_store::Store;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// 2025-01-01T00:00:00Z.
pub const START: Timestamp = Timestamp::from_unix_millis(1_735_689_600_000);

/// Everything one test needs. The temporary directory lives as long as the harness.
#[derive(Debug)]
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub app: App,
    pub clock: Arc<ManualClock>,
    /// May add and remove probes (eng-lead).
    pub ops: Caller,
    pub runner: ProbeRunner,
}

impl Harness {
    /// A store with the built-in database probe, and a runner that checks up to 32 probes at
    /// once.
    pub async fn new() -> Harness {
        Harness::with_concurrency(32).await
    }

    pub async fn with_concurrency(max_concurrent: usize) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy-safety.db");
        let store = Store::open(&format!("sqlite://{}", path.display())).unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let app = App::new(store, clock.clone(), AppSettings::default());
        let issued = app
            .create_token("ops", Role::EngLead, "test")
            .await
            .unwrap();
        let ops = app.authenticate(&issued.token).await.unwrap();
        app.sync_probes(vec![]).await.unwrap();
        let runner = ProbeRunner::new(app.clone(), max_concurrent);
        Harness {
            dir,
            app,
            clock,
            ops,
            runner,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A caller of the given role (a new principal named after the role).
    pub async fn caller(&self, name: &str, role: Role) -> Caller {
        let issued = self.app.create_token(name, role, "test").await.unwrap();
        self.app.authenticate(&issued.token).await.unwrap()
    }

    /// Adds a probe through the use case, as `POST /probes` does.
    pub async fn create(&self, request: CreateProbeRequest) -> ProbeView {
        self.app.create_probe(&self.ops, request).await.unwrap()
    }

    /// One runner step at the clock's `now`; returns how many checks it started, after they
    /// have all finished and been recorded.
    pub async fn tick(&self) -> usize {
        let handles = self.runner.tick(self.now()).await.unwrap();
        let started = handles.len();
        join_all(handles).await;
        started
    }

    /// Moves the clock on by `millis`, then ticks.
    pub async fn advance_and_tick(&self, millis: i64) -> usize {
        self.clock.advance_millis(millis);
        self.tick().await
    }

    /// The probe with its latest `history` results, newest first.
    pub async fn probe(&self, key: &str) -> ProbeView {
        self.app.get_probe(key, 1_000).await.unwrap()
    }
}

/// Awaits every started check; a check task that panicked fails the test.
pub async fn join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        handle.await.unwrap();
    }
}

/// An HTTP probe request with a short timeout and a 1 s interval.
pub fn http_probe(name: &str, url: &str) -> CreateProbeRequest {
    CreateProbeRequest {
        name: name.to_owned(),
        kind: ProbeKind::Http,
        url: Some(url.to_owned()),
        method: None,
        expected_status: None,
        address: None,
        timeout_ms: Some(200),
        interval_ms: Some(1_000),
        failure_threshold: None,
        success_threshold: None,
        critical: None,
    }
}

/// A TCP probe request with a short timeout and a 1 s interval.
pub fn tcp_probe(name: &str, address: &str) -> CreateProbeRequest {
    CreateProbeRequest {
        name: name.to_owned(),
        kind: ProbeKind::Tcp,
        url: None,
        method: None,
        expected_status: None,
        address: Some(address.to_owned()),
        timeout_ms: Some(200),
        interval_ms: Some(1_000),
        failure_threshold: None,
        success_threshold: None,
        critical: None,
    }
}

/// What the test HTTP server does with the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Behaviour {
    /// 200 at once.
    Ok = 0,
    /// 500 at once.
    Fail = 1,
    /// 200 after the server's delay (longer than any probe timeout in these tests).
    Slow = 2,
    /// Reads the request, then closes the connection without a word.
    Close = 3,
    /// 204 at once.
    NoContent = 4,
}

impl Behaviour {
    fn from_u8(value: u8) -> Behaviour {
        match value {
            1 => Behaviour::Fail,
            2 => Behaviour::Slow,
            3 => Behaviour::Close,
            4 => Behaviour::NoContent,
            _ => Behaviour::Ok,
        }
    }
}

#[derive(Debug)]
struct Shared {
    behaviour: AtomicU8,
    /// Requests the handler has seen (hang-ups are not counted).
    requests: watch::Sender<u64>,
    slow_delay: Duration,
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        Behaviour::from_u8(self.behaviour.load(Ordering::SeqCst))
    }
}

/// An axum server on 127.0.0.1 whose behaviour is switched between requests. Every answer says
/// `Connection: close`, so each check opens a new connection and sees the current behaviour
/// (a pooled connection would slip past the hang-up mode, which acts at accept).
#[derive(Debug)]
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(behaviour: Behaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            behaviour: AtomicU8::new(behaviour as u8),
            requests: watch::Sender::new(0),
            slow_delay: Duration::from_secs(5),
        });
        let router = Router::new()
            .route("/", get(answer))
            .route("/{*rest}", get(answer))
            .with_state(Arc::clone(&shared));
        let listener = SwitchListener {
            inner: listener,
            shared: Arc::clone(&shared),
            hung_up: Arc::new(Mutex::new(Vec::new())),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestServer { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.shared
            .behaviour
            .store(behaviour as u8, Ordering::SeqCst);
    }

    /// Requests that reached the handler so far.
    pub fn requests(&self) -> u64 {
        *self.shared.requests.borrow()
    }

    /// Waits until `n` requests have reached the handler (for the background loop, whose
    /// checks the test cannot await). Fails the test after 10 s rather than hang.
    pub async fn wait_for_requests(&self, n: u64) {
        let mut seen = self.shared.requests.subscribe();
        tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|count| *count >= n))
            .await
            .unwrap_or_else(|_| panic!("the server did not see {n} requests within 10 s"))
            .unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared.requests.send_modify(|count| *count += 1);
    let status = match shared.behaviour() {
        Behaviour::Ok | Behaviour::Close => StatusCode::OK,
        Behaviour::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::NoContent => StatusCode::NO_CONTENT,
        Behaviour::Slow => {
            tokio::time::sleep(shared.slow_delay).await;
            StatusCode::OK
        }
    };
    (status, [(header::CONNECTION, "close")])
}

/// Hands accepted connections to axum, except in [`Behaviour::Close`], where it reads the
/// request and hangs up without answering.
#[derive(Debug)]
struct SwitchListener {
    inner: TcpListener,
    shared: Arc<Shared>,
    hung_up: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl axum::serve::Listener for SwitchListener {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                continue;
            };
            if self.shared.behaviour() != Behaviour::Close {
                return (stream, addr);
            }
            let task = tokio::spawn(async move {
                let mut stream = stream;
                let mut buffer = [0u8; 4096];
                // Wait for the request, then drop the connection unanswered.
                let _ = stream.read(&mut buffer).await;
                drop(stream);
            });
            if let Ok(mut tasks) = self.hung_up.lock() {
                tasks.retain(|t| !t.is_finished());
                tasks.push(task);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A TCP listener on 127.0.0.1 that never accepts (the kernel completes connections to it)
/// until it is closed, after which connections are refused.
#[derive(Debug)]
pub struct TcpTarget {
    pub address: String,
    listener: Option<TcpListener>,
}

impl TcpTarget {
    pub async fn start() -> TcpTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TcpTarget {
            address: listener.local_addr().unwrap().to_string(),
            listener: Some(listener),
        }
    }

    pub fn close(&mut self) {
        self.listener = None;
    }
}
