//! The use cases of deploy-safety.
//!
//! Each use case validates its input, then runs one store transaction that gathers what the
//! core needs, asks the core, and writes the outcome together with its audit entry. Because the
//! decision and its audit entry are written in the same transaction, there is no decision
//! without a record, and no record of a decision that did not take effect: if the audit entry
//! cannot be written, nothing is (fail closed, SPEC §12).
//!
//! `now` is read from the [`Clock`] inside the transaction, at the moment of deciding, so an
//! override that expires while a request waits for the writer is not honored.

/// Where people land once signed in: the dashboard (SPEC §21).
pub const DASHBOARD_HOME: &str = "/ui/";

mod approvals;
mod audit;
mod audit_key;
mod canary;
pub mod checks;
mod clock;
mod error;
mod events;
mod freezes;
mod gate;
mod github;
mod identity;
mod incidents;
mod integrations;
mod oidc;
mod probes;
mod prometheus;
mod rollback;
mod soaks;
mod sso;
mod tokens;
mod validations;

use std::sync::Arc;

use deploy_safety_core::{EvaluationThresholds, Role, TtlMinutes};
use deploy_safety_store::Store;

pub use audit::{
    CheckpointFailure, CheckpointProof, CheckpointSettings, check_against_log, prove_checkpoints,
    verify_chain,
};
pub use audit_key::{KeyFileError, load_or_create_signing_key, load_signing_key};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AppError;
pub use events::{Executor, Webhook, retry_delay_ms};
pub use github::{GithubAppKey, GithubSettings};
pub use identity::{AuthMethod, AuthSettings, check_provider_url};
pub use integrations::{FlaggerAnswer, FlaggerSettings};
pub use oidc::{
    KEY_REFRESH_INTERVAL, MAX_TOKEN_BYTES, OidcIssuerSettings, REFETCH_INTERVAL_MS,
    REFUSAL_AUDIT_WINDOW_MS,
};
pub use probes::{DATABASE_PROBE, PROBE_HISTORY, check_url, probe_definition};
pub use prometheus::{PrometheusQueries, PrometheusSettings};
pub use soaks::SoakSettings;
pub use sso::{
    LOGIN_LIFETIME_MINUTES, LoginDone, LoginStart, SessionView, SsoSettings, TOUCH_INTERVAL_MS,
    safe_return_to,
};
pub use tokens::{IssuedToken, PresentedToken, TokenView, hash_secret};
pub use validations::{HttpGate, check_http_gate};

/// The result of a use case's transaction closure: the outer error is the store's and rolls the
/// transaction back; the inner one is the use case's, and the transaction still commits what was
/// written (such as the audit entry of a refusal).
pub(crate) type TxResult<T> = Result<Result<T, AppError>, deploy_safety_store::StoreError>;

/// Settings the use cases need.
#[derive(Clone, Debug)]
pub struct AppSettings {
    /// The longest override anyone may create, in minutes (SPEC §4, default 240).
    pub max_override_ttl_minutes: u32,
    /// The operators' HTTP release gates, run with the built-in ones.
    pub http_gates: Vec<HttpGate>,
    /// The runbook's canary evaluation table.
    pub canary_thresholds: EvaluationThresholds,
    /// Where canaries' metrics are pulled from, per environment; push works either way.
    pub prometheus: Option<PrometheusSettings>,
    /// Receivers of events.
    pub webhooks: Vec<Webhook>,
    /// Where executed rollbacks are handed; without one they are announced as events.
    pub executor: Option<Executor>,
    /// Refuse rollbacks to a version that never ran in the environment (SPEC §10).
    pub require_known_target: bool,
    /// Attempts at a webhook or executor delivery before giving up.
    pub delivery_attempts: u32,
    /// This replica's name (for `/health` and the leader election).
    pub replica: String,
    /// Signed checkpoints of the audit chain; none without a signing key (tools, tests).
    pub checkpoints: Option<CheckpointSettings>,
    /// Soaks: their thresholds' defaults, and whether production needs one.
    pub soak: SoakSettings,
    /// The environments that exist (SPEC §15): the settings file's, or the built-in two.
    pub environments: deploy_safety_core::Environments,
    /// Flagger's webhooks (SPEC §17).
    pub flagger: FlaggerSettings,
    /// GitHub deployment protection rules (SPEC §17); off without `[integrations.github]`.
    pub github: Option<GithubSettings>,
    /// OIDC workload identity and single sign-on (SPEC §18); static tokens only without.
    pub auth: AuthSettings,
    /// The two-person rule's `[[approvals]]` (SPEC §19); none: §4 as written.
    pub approvals: deploy_safety_core::ApprovalPolicy,
    /// How long an override request waits for its votes, in minutes (default 1440).
    pub pending_request_ttl_minutes: u32,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            max_override_ttl_minutes: TtlMinutes::DEFAULT_MAX,
            http_gates: Vec::new(),
            canary_thresholds: EvaluationThresholds::default(),
            prometheus: None,
            webhooks: Vec::new(),
            executor: None,
            require_known_target: false,
            delivery_attempts: 20,
            replica: "local".to_owned(),
            checkpoints: None,
            soak: SoakSettings::default(),
            environments: deploy_safety_core::Environments::built_in(),
            flagger: FlaggerSettings::default(),
            github: None,
            auth: AuthSettings::default(),
            approvals: deploy_safety_core::ApprovalPolicy::default(),
            pending_request_ttl_minutes: 1_440,
        }
    }
}

/// An optional service name from a request (SPEC §15), or 400 naming `field`.
pub(crate) fn parse_service(
    field: &str,
    service: Option<&str>,
) -> Result<Option<String>, AppError> {
    service
        .map(|s| {
            deploy_safety_core::ServiceName::parse(s)
                .map(deploy_safety_core::ServiceName::into_string)
                .map_err(AppError::invalid_text(field))
        })
        .transpose()
}

/// The authenticated principal making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// How it authenticated; every audit entry made on its behalf says so.
    pub auth: AuthMethod,
}

/// The application: the store, the clock, the settings. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    store: Store,
    clock: Arc<dyn Clock>,
    settings: Arc<AppSettings>,
    /// One full audit verification at a time.
    verify_turn: Arc<tokio::sync::Semaphore>,
    /// For HTTP probes, HTTP release gates, Prometheus, webhooks and the executor.
    http: reqwest::Client,
    /// Woken when events are committed, so event streams look without waiting.
    events_committed: Arc<tokio::sync::Notify>,
    /// The last checkpoint this process made: the next one must still find its entry, even if
    /// the stored checkpoints were deleted.
    last_checkpoint: Arc<std::sync::Mutex<Option<deploy_safety_core::Checkpoint>>>,
    /// Set when the server begins to stop: endless responses (event streams) end, so the
    /// graceful shutdown does not wait for them forever.
    shutting_down: Arc<tokio::sync::watch::Sender<bool>>,
    /// Identity providers: issuers' cached keys, the single sign-on provider.
    identity: Arc<identity::Identity>,
}

impl App {
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: AppSettings) -> Self {
        let identity = Arc::new(identity::Identity::new(&settings.auth));
        App {
            identity,
            store,
            clock,
            settings: Arc::new(settings),
            verify_turn: Arc::new(tokio::sync::Semaphore::new(1)),
            http: checks::http_client(),
            events_committed: Arc::new(tokio::sync::Notify::new()),
            last_checkpoint: Arc::new(std::sync::Mutex::new(None)),
            shutting_down: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    /// The server is stopping: event streams end (their clients reconnect elsewhere).
    pub fn begin_shutdown(&self) {
        self.shutting_down.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutting_down.borrow()
    }

    /// `name` as a configured environment, or 400 naming `field` and listing the known ones
    /// (SPEC §15). Every new action goes through here, so an environment removed from the
    /// settings file keeps its records readable but takes no new action.
    pub fn environment(
        &self,
        field: &str,
        name: deploy_safety_core::Environment,
    ) -> Result<deploy_safety_core::KnownEnvironment, AppError> {
        self.settings
            .environments
            .require(name)
            .map_err(|e| AppError::invalid(field, e.to_string()))
    }

    /// Like [`App::environment`], for an optional filter.
    pub fn environment_filter(
        &self,
        field: &str,
        name: Option<deploy_safety_core::Environment>,
    ) -> Result<Option<deploy_safety_core::Environment>, AppError> {
        name.map(|n| self.environment(field, n).map(|known| known.name))
            .transpose()
    }

    /// Whether this replica runs the background work now (always, with SQLite).
    pub fn is_leader(&self) -> bool {
        self.store.is_leader()
    }
}
