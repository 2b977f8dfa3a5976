//! Runs the real `deploy-safety` binary: the server on a free port, and the CLI against it.

#![allow(clippy::unwrap_used, dead_code)]

pub mod flows;
#[path = "../../../../tests-support/test_db.rs"]
mod test_db;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_deploy-safety");
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

pub use test_db::TestDb;

/// A database (SQLite, or PostgreSQL with `DEPLOY_SAFETY_TEST_BACKEND=postgres`) and a working
/// directory, shared by server runs and offline CLI commands.
#[derive(Debug)]
pub struct Installation {
    pub db: TestDb,
}

impl Installation {
    pub fn new() -> Self {
        Installation { db: TestDb::new() }
    }

    /// An installation on `db`.
    pub fn on(db: TestDb) -> Self {
        Installation { db }
    }

    pub fn database_url(&self) -> String {
        self.db.url()
    }

    /// `deploy-safety token create` directly on the database; returns the token.
    pub fn create_token(&self, name: &str, role: &str) -> String {
        let out = self.offline(&["token", "create", "--name", name, "--role", role]);
        assert!(
            out.status.success(),
            "token create failed: {}",
            stderr(&out)
        );
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "token create prints only the token: {text:?}"
        );
        lines[0].to_owned()
    }

    /// A command that works on the database directly (`token`, `audit verify --database-url`).
    pub fn offline(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let url = self.database_url();
        all.extend(["--database-url", url.as_str()]);
        Command::new(BINARY)
            .args(&all)
            .env_remove("DEPLOY_SAFETY_DATABASE_URL")
            .current_dir(self.db.dir())
            .output()
            .unwrap()
    }

    /// The binary with exactly `args`, in the installation's directory.
    pub fn offline_raw(&self, args: &[&str]) -> Output {
        Command::new(BINARY)
            .args(args)
            .env_remove("DEPLOY_SAFETY_DATABASE_URL")
            .current_dir(self.db.dir())
            .output()
            .unwrap()
    }

    /// Starts a server replica named `name` with its own settings file holding `toml`.
    pub fn start_replica(&self, name: &str, toml: &str) -> RunningServer {
        let path = self.db.dir().join(format!("replica-{name}.toml"));
        std::fs::write(&path, format!("replica_name = \"{name}\"\n{toml}")).unwrap();
        let path = path.display().to_string();
        RunningServer::start(self.db.dir(), &self.database_url(), &["--config", &path])
    }

    pub fn start(&self) -> RunningServer {
        RunningServer::start(self.db.dir(), &self.database_url(), &[])
    }

    /// Starts the server on `listen` (e.g. the address a stopped server had), with a settings
    /// file holding `toml`.
    pub fn start_on(&self, listen: &str, toml: &str) -> RunningServer {
        let path = self.db.dir().join("deploy-safety.toml");
        std::fs::write(&path, toml).unwrap();
        let path = path.display().to_string();
        RunningServer::start_listening(
            self.db.dir(),
            &self.database_url(),
            listen,
            &["--config", &path],
        )
    }

    /// Starts the server with a settings file holding `toml`.
    pub fn start_with_config(&self, toml: &str) -> RunningServer {
        let path = self.db.dir().join("deploy-safety.toml");
        std::fs::write(&path, toml).unwrap();
        let path = path.display().to_string();
        RunningServer::start(self.db.dir(), &self.database_url(), &["--config", &path])
    }
}

#[derive(Debug)]
pub struct RunningServer {
    child: Option<Child>,
    pub url: String,
    /// The token printed at first start, when the database had none.
    pub bootstrap_token: Option<String>,
    stdout_lines: mpsc::Receiver<String>,
}

impl RunningServer {
    fn start(dir: &Path, database_url: &str, extra: &[&str]) -> Self {
        Self::start_listening(dir, database_url, "127.0.0.1:0", extra)
    }

    fn start_listening(dir: &Path, database_url: &str, listen: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", listen, "--database-url", database_url])
            .args(extra)
            .env("DEPLOY_SAFETY_LOG", "warn")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (lines_tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let mut bootstrap_token = None;
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the server did not report its address in time"));
            if let Some(token) = line.strip_prefix("ds_") {
                bootstrap_token = Some(format!("ds_{token}"));
            }
            if let Some(url) = line.strip_prefix("deploy-safety listening on ") {
                break url.trim().to_owned();
            }
        };
        RunningServer {
            child: Some(child),
            url,
            bootstrap_token,
            stdout_lines: lines,
        }
    }

    /// The CLI against this server, as the holder of `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        Command::new(BINARY)
            .args(args)
            .env("DEPLOY_SAFETY_URL", &self.url)
            .env("DEPLOY_SAFETY_TOKEN", token)
            .output()
            .unwrap()
    }

    /// The CLI with `--json`, parsed.
    pub fn cli_json(&self, token: &str, args: &[&str]) -> (i32, serde_json::Value) {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(token, &all);
        let value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", stdout(&out), stderr(&out)));
        (out.status.code().unwrap_or(-1), value)
    }

    /// Runs the CLI with `--json` until `accept` likes the answer, or fails at the deadline.
    pub fn wait_for_json(
        &self,
        token: &str,
        args: &[&str],
        what: &str,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, value) = self.cli_json(token, args);
            if accept(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {value}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the server process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGTERM, then waits (with a deadline) for a clean exit.
    pub fn stop(mut self) {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let (done, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait());
        });
        match exited.recv_timeout(Duration::from_secs(30)) {
            Ok(status) => {
                let status = status.unwrap();
                assert!(
                    status.success(),
                    "the server exited with {status} after SIGTERM"
                );
            }
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("the server did not stop within 30 s of SIGTERM");
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// A tiny HTTP server on 127.0.0.1 that answers every request with `status` and records the
/// request lines it saw, and each request's head (request line and headers).
#[derive(Debug)]
pub struct StaticHttp {
    pub address: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl StaticHttp {
    pub fn start(status: u16) -> Self {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (lines, all_heads) = (std::sync::Arc::clone(&seen), std::sync::Arc::clone(&heads));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65_536 {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let head = request
                    .split("\r\n\r\n")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if let Some(line) = head.lines().next() {
                    lines.lock().unwrap().push(line.to_owned());
                }
                all_heads.lock().unwrap().push(head);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
            }
        });
        StaticHttp {
            address,
            seen,
            heads,
        }
    }

    /// The value of header `name` (lower case) in each request seen that has it.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}:");
        self.heads
            .lock()
            .unwrap()
            .iter()
            .filter_map(|head| {
                head.lines()
                    .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
                    .map(|l| l[prefix.len()..].trim().to_owned())
            })
            .collect()
    }
}

impl RunningServer {
    /// Starts the CLI against this server as a child process, stdout and stderr piped, for
    /// commands that run until something happens (`canary watch`).
    pub fn spawn_cli(&self, token: &str, args: &[&str]) -> Child {
        Command::new(BINARY)
            .args(args)
            .env("DEPLOY_SAFETY_URL", &self.url)
            .env("DEPLOY_SAFETY_TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}
