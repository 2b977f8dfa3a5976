//! Settings, layered: built-in defaults, then the TOML file (`--config`), then `DEPLOY_SAFETY_*`
//! environment variables, then command-line flags. Read once at start.
//!
//! The file rejects unknown keys: a misspelt setting in a security control must fail loudly, not
//! fall back to a default. Environment variables are an explicit list (see [`ENV_VARS`]), so the
//! CLI's own `DEPLOY_SAFETY_URL` and `DEPLOY_SAFETY_TOKEN` never collide with server settings.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use deploy_safety_api_types::CreateProbeRequest;
use deploy_safety_app::{
    AppError, AppSettings, CheckpointSettings, Executor, FlaggerSettings, GithubAppKey,
    GithubSettings, HttpGate, PrometheusQueries, PrometheusSettings, SoakSettings, Webhook,
    check_http_gate, check_url, load_or_create_signing_key, probe_definition,
};
use deploy_safety_core::{
    Action, ApprovalPolicy, ApprovalRule, Band, Environment, EnvironmentSelector, EnvironmentSpec,
    Environments, EvaluationThresholds, EventType, Name, ProbeDefinition, Role, StatusRange, Tier,
};
use deploy_safety_server::HttpSettings;

use crate::auth_settings::AuthSection;
use deploy_safety_store::redact_url;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// Every setting, resolved.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// `sqlite://PATH` (embedded, the default) or `postgres://...` (several replicas).
    pub database_url: String,
    /// This replica's name, for `/health` and the leader election (default: hostname-pid).
    pub replica_name: Option<String>,
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `deploy_safety=debug,info`.
    pub log_filter: String,
    pub http: HttpSection,
    pub overrides: OverridesSection,
    /// Health probes, checked on their schedule (`[[probes]]`).
    pub probes: Vec<CreateProbeRequest>,
    /// HTTP release gates, run with the built-in ones (`[[validation_gates]]`).
    pub validation_gates: Vec<ValidationGateSection>,
    pub canary: CanarySection,
    /// Where canary metrics are pulled from.
    pub prometheus: Option<PrometheusSection>,
    /// Receivers of events (`[[webhooks]]`).
    pub webhooks: Vec<WebhookSection>,
    pub rollback: RollbackSection,
    pub deliveries: DeliveriesSection,
    pub audit: AuditSection,
    pub soak: SoakSection,
    /// The environments that exist (`[[environments]]`); none listed: `staging` and
    /// `production`.
    pub environments: Vec<EnvironmentSection>,
    /// Deploy engines that call the gate (`[integrations.*]`, SPEC §17).
    pub integrations: IntegrationsSection,
    /// OIDC workload identity and single sign-on (`[auth]`, SPEC §18).
    pub auth: AuthSection,
    /// The two-person rule (`[[approvals]]`, SPEC §19): overrides that only come from a
    /// request other people approve.
    pub approvals: Vec<ApprovalSection>,
}

/// One `[[approvals]]` rule (SPEC §19).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSection {
    /// The gated actions whose overrides need approvals; absent: every gated action.
    #[serde(default)]
    pub actions: Option<Vec<Action>>,
    /// Environment names, or `tier:production` / `tier:staging`.
    pub environments: Vec<String>,
    /// Distinct approvers needed, not counting the requester (at least 1).
    pub required: u32,
    /// Who may vote; absent: the roles that may create that override (SPEC §4).
    #[serde(default)]
    pub approver_roles: Option<Vec<Role>>,
}

/// `[integrations]`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrationsSection {
    pub flagger: FlaggerSection,
    pub github: Option<GithubSection>,
}

/// `[integrations.flagger]`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlaggerSection {
    /// Answer the `rollback` hook with "yes" while a critical incident is open.
    pub rollback_on_critical_incident: bool,
    /// `[integrations.flagger.namespaces]`: Kubernetes namespace → environment.
    pub namespaces: std::collections::BTreeMap<String, String>,
}

/// `[integrations.github]`: a GitHub App's custom deployment protection rule.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSection {
    /// The GitHub App's id (a number, as GitHub shows it; its "client id" also works).
    pub app_id: String,
    /// The app's private key (PEM), as downloaded from GitHub.
    pub private_key_file: String,
    /// `https://api.github.com`; GitHub Enterprise: `https://HOST/api/v3`.
    #[serde(default = "default_github_api")]
    pub api_url: String,
    /// The app's webhook secret: GitHub signs every delivery with it.
    pub webhook_secret: String,
    /// The gated action a deployment asks for (default `deploy.canary.start`).
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `[integrations.github.environments]`: GitHub environment → deploy-safety environment;
    /// one not listed maps to the environment of the same name.
    #[serde(default)]
    pub environments: std::collections::BTreeMap<String, String>,
}

fn default_github_api() -> String {
    "https://api.github.com".to_owned()
}

impl fmt::Debug for GithubSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubSection")
            .field("app_id", &self.app_id)
            .field("private_key_file", &self.private_key_file)
            .field("api_url", &self.api_url)
            .field("webhook_secret", &"<redacted>")
            .field("action", &self.action)
            .field("environments", &self.environments)
            .finish()
    }
}

/// One `[[environments]]` entry (SPEC §15).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSection {
    /// 1 to 63 characters of `a-z 0-9 -`, starting with a letter.
    pub name: Environment,
    /// `staging` or `production`: which of the runbook's rules apply.
    pub tier: Tier,
    /// Where a release must have passed validation first; default every staging-tier one.
    #[serde(default)]
    pub promotes_from: Vec<Environment>,
}

/// `[soak]`: the runbook's step 6.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoakSection {
    /// A production canary start needs a passed soak of the release in staging (409
    /// `SOAK_REQUIRED`), and validations gain the gate `soak`.
    pub required_before_production: bool,
    /// A soak's error-rate bound when its request names none, in percent.
    pub max_error_rate_percent: f64,
    /// A soak's latency bound (above the baseline) when its request names none, in percent.
    pub max_latency_increase_percent: f64,
}

impl Default for SoakSection {
    fn default() -> Self {
        let defaults = SoakSettings::default();
        SoakSection {
            required_before_production: defaults.required_before_production,
            max_error_rate_percent: defaults.max_error_rate_percent,
            max_latency_increase_percent: defaults.max_latency_increase_percent,
        }
    }
}

/// `[audit]`: signed checkpoints of the audit chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// The Ed25519 key checkpoints are signed with (PKCS#8 PEM, mode 0600), outside the
    /// database; created at first start if absent. Every replica needs the same file.
    pub signing_key_file: String,
    /// A checkpoint is made this often, whether or not entries were appended.
    pub checkpoint_interval_seconds: u64,
    /// Each checkpoint is also appended here as one JSON line (e.g. on another volume).
    pub checkpoint_file: Option<String>,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            signing_key_file: "deploy-safety-audit-key.pem".to_owned(),
            checkpoint_interval_seconds: 60,
            checkpoint_file: None,
        }
    }
}

/// `[canary]`: the runbook's evaluation table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanarySection {
    pub thresholds: ThresholdsSection,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsSection {
    pub error_rate_percent: BandSection,
    /// p99 latency above the baseline, in percent.
    pub latency_increase_percent: BandSection,
    pub cpu_percent: BandSection,
    pub memory_percent: BandSection,
}

/// Below `healthy_below` healthy, above `unhealthy_above` unhealthy, between degraded.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandSection {
    pub healthy_below: f64,
    pub unhealthy_above: f64,
}

impl From<Band> for BandSection {
    fn from(b: Band) -> Self {
        BandSection {
            healthy_below: b.healthy_below,
            unhealthy_above: b.unhealthy_above,
        }
    }
}

impl From<BandSection> for Band {
    fn from(b: BandSection) -> Self {
        Band {
            healthy_below: b.healthy_below,
            unhealthy_above: b.unhealthy_above,
        }
    }
}

impl Default for ThresholdsSection {
    fn default() -> Self {
        let t = EvaluationThresholds::default();
        ThresholdsSection {
            error_rate_percent: t.error_rate_percent.into(),
            latency_increase_percent: t.latency_increase_percent.into(),
            cpu_percent: t.cpu_percent.into(),
            memory_percent: t.memory_percent.into(),
        }
    }
}

/// `[prometheus]` and `[prometheus.queries.<environment>]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSection {
    pub url: String,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub queries: std::collections::BTreeMap<String, QueriesSection>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueriesSection {
    pub error_rate_percent: Option<String>,
    pub latency_p99_ms: Option<String>,
    pub baseline_latency_p99_ms: Option<String>,
    pub cpu_percent: Option<String>,
    pub memory_percent: Option<String>,
}

/// `[[webhooks]]`: a receiver of events.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub name: String,
    pub url: String,
    /// Signs every body (HMAC-SHA256).
    pub secret: String,
    /// Event types to send; absent: all.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl std::fmt::Debug for WebhookSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSection")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("events", &self.events)
            .finish()
    }
}

/// `[rollback]`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollbackSection {
    /// Refuse rollbacks to a version that never ran in the environment.
    pub require_known_target: bool,
    /// Where executed rollbacks are sent; absent: announced as events only.
    pub executor_url: Option<String>,
    pub executor_secret: Option<String>,
    pub executor_timeout_ms: Option<u64>,
}

impl std::fmt::Debug for RollbackSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollbackSection")
            .field("require_known_target", &self.require_known_target)
            .field("executor_url", &self.executor_url)
            .field(
                "executor_secret",
                &self.executor_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `[deliveries]`: webhook and executor retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveriesSection {
    /// Attempts before a delivery is given up (backoff 1 s, 2 s, 4 s, ... up to 5 min).
    pub max_attempts: u32,
}

impl Default for DeliveriesSection {
    fn default() -> Self {
        DeliveriesSection { max_attempts: 20 }
    }
}

/// An HTTP release gate: the URL must answer an expected status within the timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationGateSection {
    pub name: String,
    /// May contain `{releaseId}` and `{environment}`.
    pub url: String,
    #[serde(default)]
    pub method: Option<String>,
    /// Default `200-299`.
    #[serde(default)]
    pub expected_status: Option<String>,
    /// Default 5000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Larger request bodies are refused with 413.
    pub body_limit_bytes: usize,
    /// Requests taking longer are answered 503 (`timeout`).
    pub request_timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverridesSection {
    /// The longest override anyone may create.
    pub max_ttl_minutes: u32,
    /// How long an override request waits for its votes before it expires.
    pub pending_ttl_minutes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".to_owned(),
            database_url: "sqlite://deploy-safety.db".to_owned(),
            replica_name: None,
            log_format: LogFormat::Human,
            log_filter: "info".to_owned(),
            http: HttpSection::default(),
            overrides: OverridesSection::default(),
            probes: Vec::new(),
            validation_gates: Vec::new(),
            canary: CanarySection::default(),
            prometheus: None,
            webhooks: Vec::new(),
            rollback: RollbackSection::default(),
            deliveries: DeliveriesSection::default(),
            audit: AuditSection::default(),
            soak: SoakSection::default(),
            environments: Vec::new(),
            integrations: IntegrationsSection::default(),
            auth: AuthSection::default(),
            approvals: Vec::new(),
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        let defaults = HttpSettings::default();
        HttpSection {
            body_limit_bytes: defaults.body_limit_bytes,
            request_timeout_ms: u64::try_from(defaults.request_timeout.as_millis())
                .unwrap_or(10_000),
        }
    }
}

impl Default for OverridesSection {
    fn default() -> Self {
        let defaults = AppSettings::default();
        OverridesSection {
            max_ttl_minutes: defaults.max_override_ttl_minutes,
            pending_ttl_minutes: defaults.pending_request_ttl_minutes,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("replica_name", &self.replica_name)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("http", &self.http)
            .field("overrides", &self.overrides)
            .field("probes", &self.probes)
            .field("validation_gates", &self.validation_gates)
            .field("canary", &self.canary)
            .field("prometheus", &self.prometheus)
            .field("webhooks", &self.webhooks)
            .field("rollback", &self.rollback)
            .field("deliveries", &self.deliveries)
            .field("audit", &self.audit)
            .field("soak", &self.soak)
            .field("environments", &self.environments)
            .field("integrations", &self.integrations)
            .field("auth", &self.auth)
            .field("approvals", &self.approvals)
            .finish()
    }
}

/// The environment variables read, and the setting each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("DEPLOY_SAFETY_LISTEN", "listen"),
    ("DEPLOY_SAFETY_DATABASE_URL", "database_url"),
    ("DEPLOY_SAFETY_REPLICA_NAME", "replica_name"),
    ("DEPLOY_SAFETY_LOG_FORMAT", "log_format"),
    ("DEPLOY_SAFETY_LOG", "log_filter"),
    (
        "DEPLOY_SAFETY_HTTP_BODY_LIMIT_BYTES",
        "http.body_limit_bytes",
    ),
    (
        "DEPLOY_SAFETY_HTTP_REQUEST_TIMEOUT_MS",
        "http.request_timeout_ms",
    ),
    (
        "DEPLOY_SAFETY_OVERRIDES_MAX_TTL_MINUTES",
        "overrides.max_ttl_minutes",
    ),
    (
        "DEPLOY_SAFETY_OVERRIDES_PENDING_TTL_MINUTES",
        "overrides.pending_ttl_minutes",
    ),
    (
        "DEPLOY_SAFETY_AUDIT_SIGNING_KEY_FILE",
        "audit.signing_key_file",
    ),
    (
        "DEPLOY_SAFETY_AUDIT_CHECKPOINT_INTERVAL_SECONDS",
        "audit.checkpoint_interval_seconds",
    ),
    (
        "DEPLOY_SAFETY_AUDIT_CHECKPOINT_FILE",
        "audit.checkpoint_file",
    ),
    (
        "DEPLOY_SAFETY_SOAK_REQUIRED_BEFORE_PRODUCTION",
        "soak.required_before_production",
    ),
    (
        "DEPLOY_SAFETY_AUTH_SSO_CLIENT_SECRET",
        "auth.sso.client_secret",
    ),
];

/// Settings given as flags; `None` leaves the layer below in place.
#[derive(Clone, Debug, Default)]
pub struct FlagSettings {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl Settings {
    /// Resolves the layers. `env` looks a variable up (tests pass a map; `main` the process's).
    pub fn load(
        config_file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &FlagSettings,
    ) -> anyhow::Result<Settings> {
        let mut settings = match config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => Settings::default(),
        };
        for (var, key) in ENV_VARS {
            if let Some(value) = env(var) {
                settings
                    .set(key, &value)
                    .with_context(|| format!("invalid value in {var}"))?;
            }
        }
        if let Some(listen) = &flags.listen {
            settings.listen.clone_from(listen);
        }
        if let Some(url) = &flags.database_url {
            settings.database_url.clone_from(url);
        }
        if let Some(format) = flags.log_format {
            settings.log_format = format;
        }
        settings.validate()?;
        Ok(settings)
    }

    fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match key {
            "listen" => self.listen = value.to_owned(),
            "database_url" => self.database_url = value.to_owned(),
            "replica_name" => self.replica_name = Some(value.to_owned()),
            "log_format" => {
                self.log_format = match value {
                    "human" => LogFormat::Human,
                    "json" => LogFormat::Json,
                    other => bail!("`{other}`: expected human or json"),
                }
            }
            "log_filter" => self.log_filter = value.to_owned(),
            "http.body_limit_bytes" => self.http.body_limit_bytes = number(value)?,
            "http.request_timeout_ms" => self.http.request_timeout_ms = number(value)?,
            "overrides.max_ttl_minutes" => self.overrides.max_ttl_minutes = number(value)?,
            "overrides.pending_ttl_minutes" => {
                self.overrides.pending_ttl_minutes = number(value)?;
            }
            "audit.signing_key_file" => self.audit.signing_key_file = value.to_owned(),
            "audit.checkpoint_interval_seconds" => {
                self.audit.checkpoint_interval_seconds = number(value)?;
            }
            "audit.checkpoint_file" => self.audit.checkpoint_file = Some(value.to_owned()),
            "soak.required_before_production" => {
                self.soak.required_before_production = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => bail!("`{other}`: expected true or false"),
                }
            }
            "auth.sso.client_secret" => match &mut self.auth.sso {
                Some(sso) => sso.client_secret = value.to_owned(),
                None => bail!("there is no [auth.sso] section for the client secret to go to"),
            },
            other => bail!("unknown setting {other}"),
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "listen `{}` is not an IP address and port, e.g. 127.0.0.1:8080",
                self.listen
            );
        }
        if self.http.body_limit_bytes < 1024 {
            bail!("http.body_limit_bytes must be at least 1024");
        }
        if self.http.request_timeout_ms < 100 {
            bail!("http.request_timeout_ms must be at least 100");
        }
        if self.overrides.max_ttl_minutes == 0 {
            bail!("overrides.max_ttl_minutes must be at least 1");
        }
        if !(1..=43_200).contains(&self.overrides.pending_ttl_minutes) {
            bail!("overrides.pending_ttl_minutes must be from 1 to 43200 (30 days)");
        }
        self.approval_policy()?;
        let probes = self.probe_definitions()?;
        for (i, probe) in probes.iter().enumerate() {
            if probes[..i].iter().any(|p| p.name == probe.name) {
                bail!("two [[probes]] are named `{}`", probe.name);
            }
        }
        let environments = self.environments()?;
        if let Some(section) = &self.prometheus {
            for name in section.queries.keys() {
                if environments.parse(name).is_err() {
                    bail!("prometheus.queries.{name}: {}", environments.unknown(name));
                }
            }
        }
        self.prometheus()?;
        self.webhooks()?;
        self.executor()?;
        self.flagger()?;
        self.github()?;
        self.auth.resolve()?;
        if self.deliveries.max_attempts == 0 {
            bail!("deliveries.max_attempts must be at least 1");
        }
        if !(1..=86_400).contains(&self.audit.checkpoint_interval_seconds) {
            bail!("audit.checkpoint_interval_seconds must be from 1 to 86400");
        }
        for (name, value) in [
            ("max_error_rate_percent", self.soak.max_error_rate_percent),
            (
                "max_latency_increase_percent",
                self.soak.max_latency_increase_percent,
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                bail!("soak.{name} must be a number of at least 0");
            }
        }
        if self.audit.signing_key_file.is_empty() {
            bail!("audit.signing_key_file must name a file");
        }
        if self.audit.checkpoint_file.as_deref() == Some("") {
            bail!("audit.checkpoint_file must name a file (or be left out)");
        }
        let t = self.thresholds();
        for (name, band) in [
            ("error_rate_percent", t.error_rate_percent),
            ("latency_increase_percent", t.latency_increase_percent),
            ("cpu_percent", t.cpu_percent),
            ("memory_percent", t.memory_percent),
        ] {
            if !(band.healthy_below.is_finite() && band.unhealthy_above.is_finite())
                || band.healthy_below > band.unhealthy_above
            {
                bail!("canary.thresholds.{name}: healthy_below must not exceed unhealthy_above");
            }
        }
        let gates = self.http_gates()?;
        for (i, gate) in gates.iter().enumerate() {
            if gates[..i].iter().any(|g| g.name == gate.name) {
                bail!("two [[validation_gates]] are named `{}`", gate.name);
            }
        }
        Ok(())
    }

    /// The `[[probes]]`, checked as `POST /probes` checks a body.
    pub fn probe_definitions(&self) -> anyhow::Result<Vec<ProbeDefinition>> {
        self.probes
            .iter()
            .enumerate()
            .map(|(i, request)| {
                probe_definition(request).map_err(|e| setting_error(&format!("probes[{i}]"), &e))
            })
            .collect()
    }

    fn http_gates(&self) -> anyhow::Result<Vec<HttpGate>> {
        self.validation_gates
            .iter()
            .enumerate()
            .map(|(i, section)| {
                let at = format!("validation_gates[{i}]");
                let expected_status = match section.expected_status.as_deref() {
                    Some(text) => StatusRange::parse(text)
                        .map_err(|e| anyhow::anyhow!("{at}.expected_status: {e}"))?,
                    None => StatusRange::SUCCESS,
                };
                let timeout_ms = section.timeout_ms.unwrap_or(5_000);
                if !(10..=120_000).contains(&timeout_ms) {
                    bail!("{at}.timeout_ms: must be from 10 to 120000");
                }
                let gate = HttpGate {
                    name: section.name.clone(),
                    url: section.url.clone(),
                    method: section
                        .method
                        .as_deref()
                        .unwrap_or("GET")
                        .to_ascii_uppercase(),
                    expected_status,
                    timeout: Duration::from_millis(timeout_ms),
                };
                check_http_gate(&gate).map_err(|e| setting_error(&at, &e))?;
                Ok(gate)
            })
            .collect()
    }

    pub fn http(&self) -> HttpSettings {
        HttpSettings {
            body_limit_bytes: self.http.body_limit_bytes,
            request_timeout: Duration::from_millis(self.http.request_timeout_ms),
        }
    }

    /// The use cases' settings. Everything here was checked by `validate` when the settings
    /// were loaded.
    pub fn app(&self) -> AppSettings {
        AppSettings {
            max_override_ttl_minutes: self.overrides.max_ttl_minutes,
            http_gates: self.http_gates().unwrap_or_default(),
            canary_thresholds: self.thresholds(),
            prometheus: self.prometheus().ok().flatten(),
            webhooks: self.webhooks().unwrap_or_default(),
            executor: self.executor().ok().flatten(),
            require_known_target: self.rollback.require_known_target,
            delivery_attempts: self.deliveries.max_attempts,
            replica: self.replica(),
            checkpoints: None,
            soak: SoakSettings {
                required_before_production: self.soak.required_before_production,
                max_error_rate_percent: self.soak.max_error_rate_percent,
                max_latency_increase_percent: self.soak.max_latency_increase_percent,
            },
            environments: self.environments().unwrap_or_default(),
            flagger: self.flagger().unwrap_or_default(),
            github: self.github().ok().flatten(),
            auth: self.auth.resolve().unwrap_or_default(),
            approvals: self.approval_policy().unwrap_or_default(),
            pending_request_ttl_minutes: self.overrides.pending_ttl_minutes,
        }
    }

    /// The `[[approvals]]` rules, checked against the environments.
    pub fn approval_policy(&self) -> anyhow::Result<ApprovalPolicy> {
        let environments = self.environments()?;
        let mut rules = Vec::with_capacity(self.approvals.len());
        for (index, section) in self.approvals.iter().enumerate() {
            let selectors = section
                .environments
                .iter()
                .map(|text| EnvironmentSelector::parse(text))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    anyhow::anyhow!("[[approvals]] #{}: `environments`: {e}", index + 1)
                })?;
            rules.push(ApprovalRule {
                actions: section
                    .actions
                    .clone()
                    .unwrap_or_else(|| Action::ALL.to_vec()),
                environments: selectors,
                required: section.required,
                approver_roles: section.approver_roles.clone().unwrap_or_default(),
            });
        }
        ApprovalPolicy::new(rules, &environments).map_err(|e| anyhow::anyhow!(e))
    }

    /// `[integrations.flagger]`, its namespaces mapped to configured environments.
    fn flagger(&self) -> anyhow::Result<FlaggerSettings> {
        let environments = self.environments()?;
        let section = &self.integrations.flagger;
        let namespaces = section
            .namespaces
            .iter()
            .map(|(namespace, name)| {
                environments
                    .parse(name)
                    .map(|known| (namespace.clone(), known.name))
                    .map_err(|e| {
                        anyhow::anyhow!("integrations.flagger.namespaces.{namespace}: {e}")
                    })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(FlaggerSettings {
            namespaces,
            rollback_on_critical_incident: section.rollback_on_critical_incident,
        })
    }

    /// `[integrations.github]`, with the app's key read from its file.
    fn github(&self) -> anyhow::Result<Option<GithubSettings>> {
        let Some(section) = &self.integrations.github else {
            return Ok(None);
        };
        let at = "integrations.github";
        if section.app_id.trim().is_empty() {
            bail!("{at}.app_id: must name the GitHub App");
        }
        if section.webhook_secret.len() < 16 {
            bail!("{at}.webhook_secret: must be at least 16 characters");
        }
        check_url("api_url", &section.api_url).map_err(|e| setting_error(at, &e))?;
        let pem = std::fs::read(&section.private_key_file).with_context(|| {
            format!(
                "{at}.private_key_file: cannot read `{}`",
                section.private_key_file
            )
        })?;
        let private_key = GithubAppKey::from_pem(&pem).map_err(|e| {
            anyhow::anyhow!("{at}.private_key_file `{}`: {e}", section.private_key_file)
        })?;
        let action = match &section.action {
            None => Action::CanaryStart,
            Some(name) => name
                .parse::<Action>()
                .map_err(|e| anyhow::anyhow!("{at}.action: {e}"))?,
        };
        let known = self.environments()?;
        let environments = section
            .environments
            .iter()
            .map(|(github_name, name)| {
                known
                    .parse(name)
                    .map(|k| (github_name.clone(), k.name))
                    .map_err(|e| anyhow::anyhow!("{at}.environments.{github_name}: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(GithubSettings {
            app_id: section.app_id.trim().to_owned(),
            private_key,
            api_url: section.api_url.trim_end_matches('/').to_owned(),
            webhook_secret: section.webhook_secret.clone(),
            action,
            environments,
            timeout: Duration::from_millis(timeout(
                &format!("{at}.timeout_ms"),
                section.timeout_ms,
                10_000,
            )?),
        }))
    }

    /// The checkpoint settings, with the signing key read from its file (created if absent);
    /// also whether the key was created now. Fails, naming the file, when it is readable by
    /// others or not a key: the server must not start with a key it cannot trust.
    pub fn checkpoints(&self) -> anyhow::Result<(CheckpointSettings, bool)> {
        let (key, created) = load_or_create_signing_key(Path::new(&self.audit.signing_key_file))?;
        Ok((
            CheckpointSettings {
                key,
                interval: Duration::from_secs(self.audit.checkpoint_interval_seconds),
                file: self.audit.checkpoint_file.as_ref().map(PathBuf::from),
            },
            created,
        ))
    }

    /// The configured environments, or the two built-in ones.
    pub fn environments(&self) -> anyhow::Result<Environments> {
        Environments::new(
            self.environments
                .iter()
                .map(|e| EnvironmentSpec {
                    name: e.name,
                    tier: e.tier,
                    promotes_from: e.promotes_from.clone(),
                })
                .collect(),
        )
        .map_err(|e| anyhow::anyhow!("[[environments]]: {e}"))
    }

    /// This replica's name.
    pub fn replica(&self) -> String {
        self.replica_name
            .clone()
            .unwrap_or_else(deploy_safety_store::default_replica_name)
    }

    fn thresholds(&self) -> EvaluationThresholds {
        let t = &self.canary.thresholds;
        EvaluationThresholds {
            error_rate_percent: t.error_rate_percent.into(),
            latency_increase_percent: t.latency_increase_percent.into(),
            cpu_percent: t.cpu_percent.into(),
            memory_percent: t.memory_percent.into(),
        }
    }

    fn prometheus(&self) -> anyhow::Result<Option<PrometheusSettings>> {
        let Some(section) = &self.prometheus else {
            return Ok(None);
        };
        check_url("prometheus.url", &section.url).map_err(|e| setting_error("prometheus", &e))?;
        let mut queries = Vec::new();
        for (environment, q) in &section.queries {
            let environment: Environment = environment
                .parse()
                .map_err(|e| anyhow::anyhow!("prometheus.queries.{environment}: {e}"))?;
            queries.push((
                environment,
                PrometheusQueries {
                    error_rate_percent: q.error_rate_percent.clone(),
                    latency_p99_ms: q.latency_p99_ms.clone(),
                    baseline_latency_p99_ms: q.baseline_latency_p99_ms.clone(),
                    cpu_percent: q.cpu_percent.clone(),
                    memory_percent: q.memory_percent.clone(),
                },
            ));
        }
        Ok(Some(PrometheusSettings {
            url: section.url.clone(),
            timeout: Duration::from_millis(timeout(
                "prometheus.timeout_ms",
                section.timeout_ms,
                2_000,
            )?),
            queries,
        }))
    }

    fn webhooks(&self) -> anyhow::Result<Vec<Webhook>> {
        self.webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let at = format!("webhooks[{i}]");
                Name::parse(&w.name).map_err(|e| anyhow::anyhow!("{at}.name: {e}"))?;
                check_url("url", &w.url).map_err(|e| setting_error(&at, &e))?;
                if w.secret.len() < 16 {
                    bail!("{at}.secret: must be at least 16 characters");
                }
                let events = w
                    .events
                    .as_ref()
                    .map(|names| {
                        names
                            .iter()
                            .map(|n| n.parse::<EventType>())
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{at}.events: {e}"))?;
                Ok(Webhook {
                    name: w.name.clone(),
                    url: w.url.clone(),
                    secret: w.secret.clone(),
                    events,
                    timeout: Duration::from_millis(timeout(
                        &format!("{at}.timeout_ms"),
                        w.timeout_ms,
                        5_000,
                    )?),
                })
            })
            .collect()
    }

    fn executor(&self) -> anyhow::Result<Option<Executor>> {
        let r = &self.rollback;
        match (&r.executor_url, &r.executor_secret) {
            (None, None) => Ok(None),
            (Some(url), Some(secret)) => {
                check_url("executor_url", url).map_err(|e| setting_error("rollback", &e))?;
                if secret.len() < 16 {
                    bail!("rollback.executor_secret: must be at least 16 characters");
                }
                Ok(Some(Executor {
                    url: url.clone(),
                    secret: secret.clone(),
                    timeout: Duration::from_millis(timeout(
                        "rollback.executor_timeout_ms",
                        r.executor_timeout_ms,
                        10_000,
                    )?),
                }))
            }
            _ => bail!("rollback: executor_url and executor_secret go together"),
        }
    }

    /// The resolved settings as TOML, with the database password and secrets redacted.
    pub fn to_redacted_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.database_url = redact_url(&shown.database_url);
        for webhook in &mut shown.webhooks {
            webhook.secret = "<redacted>".to_owned();
        }
        if let Some(github) = &mut shown.integrations.github {
            github.webhook_secret = "<redacted>".to_owned();
        }
        if let Some(sso) = &mut shown.auth.sso {
            sso.client_secret = "<redacted>".to_owned();
        }
        if shown.rollback.executor_secret.is_some() {
            shown.rollback.executor_secret = Some("<redacted>".to_owned());
        }
        Ok(toml::to_string_pretty(&shown)?)
    }
}

fn timeout(at: &str, value: Option<u64>, default: u64) -> anyhow::Result<u64> {
    let ms = value.unwrap_or(default);
    if (10..=120_000).contains(&ms) {
        Ok(ms)
    } else {
        bail!("{at}: must be from 10 to 120000")
    }
}

fn setting_error(at: &str, error: &AppError) -> anyhow::Error {
    match error {
        AppError::Invalid { field, message } => anyhow::anyhow!("{at}.{field}: {message}"),
        other => anyhow::anyhow!("{at}: {other}"),
    }
}

fn number<T: std::str::FromStr>(value: &str) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value
        .trim()
        .parse()
        .with_context(|| format!("`{value}` is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults() {
        let s = Settings::load(None, env(&[]), &FlagSettings::default()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://deploy-safety.db");
        assert_eq!(s.overrides.max_ttl_minutes, 240);
        assert_eq!(s.log_format, LogFormat::Human);
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let f = file(
            "listen = \"0.0.0.0:1\"\ndatabase_url = \"sqlite://file.db\"\n[overrides]\nmax_ttl_minutes = 30\n",
        );
        let s = Settings::load(Some(f.path()), env(&[]), &FlagSettings::default()).unwrap();
        assert_eq!(s.listen, "0.0.0.0:1");
        assert_eq!(s.overrides.max_ttl_minutes, 30);

        let e = env(&[
            ("DEPLOY_SAFETY_LISTEN", "127.0.0.1:2"),
            ("DEPLOY_SAFETY_OVERRIDES_MAX_TTL_MINUTES", "45"),
        ]);
        let s = Settings::load(Some(f.path()), &e, &FlagSettings::default()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:2");
        assert_eq!(s.database_url, "sqlite://file.db");
        assert_eq!(s.overrides.max_ttl_minutes, 45);

        let flags = FlagSettings {
            listen: Some("127.0.0.1:3".into()),
            database_url: Some("sqlite://flag.db".into()),
            log_format: Some(LogFormat::Json),
        };
        let s = Settings::load(Some(f.path()), &e, &flags).unwrap();
        assert_eq!(s.listen, "127.0.0.1:3");
        assert_eq!(s.database_url, "sqlite://flag.db");
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn the_sso_client_secret_can_come_from_the_environment_and_is_never_shown() {
        let f = file(
            "[auth.sso]\nissuer = \"https://idp.example\"\nclient_id = \"deploy-safety\"\n\
             redirect_url = \"https://gate.example/api/deploy-safety/auth/callback\"\n\
             roles = { \"leads\" = \"eng-lead\" }\n",
        );
        let err = Settings::load(Some(f.path()), env(&[]), &FlagSettings::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("auth.sso.client_secret"),
            "{err:#}"
        );
        let e = env(&[("DEPLOY_SAFETY_AUTH_SSO_CLIENT_SECRET", "from-the-vault")]);
        let s = Settings::load(Some(f.path()), e, &FlagSettings::default()).unwrap();
        assert_eq!(s.app().auth.sso.unwrap().client_secret, "from-the-vault");
        let shown = s.to_redacted_toml().unwrap();
        assert!(!shown.contains("from-the-vault"), "{shown}");
        assert!(!format!("{s:?}").contains("from-the-vault"));

        let e = env(&[("DEPLOY_SAFETY_AUTH_SSO_CLIENT_SECRET", "x")]);
        let err = Settings::load(None, e, &FlagSettings::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("no [auth.sso] section"),
            "{err:#}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let f = file("lisen = \"x\"\n");
        let err = Settings::load(Some(f.path()), env(&[]), &FlagSettings::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `lisen`"),
            "{err:#}"
        );

        let e = env(&[("DEPLOY_SAFETY_OVERRIDES_MAX_TTL_MINUTES", "lots")]);
        let err = Settings::load(None, e, &FlagSettings::default()).unwrap_err();
        assert!(format!("{err:#}").contains("DEPLOY_SAFETY_OVERRIDES_MAX_TTL_MINUTES"));

        let e = env(&[("DEPLOY_SAFETY_OVERRIDES_MAX_TTL_MINUTES", "0")]);
        assert!(Settings::load(None, e, &FlagSettings::default()).is_err());

        let e = env(&[("DEPLOY_SAFETY_LISTEN", "notanaddr")]);
        let err = Settings::load(None, e, &FlagSettings::default()).unwrap_err();
        assert!(format!("{err:#}").contains("not an IP address"), "{err:#}");
    }

    #[test]
    fn approval_rules_come_from_the_file_and_are_checked() {
        let f = file(
            r#"
[overrides]
pending_ttl_minutes = 90

[[approvals]]
environments = ["tier:production"]
actions = ["deploy.canary.start"]
required = 2
approver_roles = ["eng-lead", "security-team"]

[[approvals]]
environments = ["staging"]
required = 1
"#,
        );
        let s = Settings::load(Some(f.path()), env(&[]), &FlagSettings::default()).unwrap();
        let app = s.app();
        assert_eq!(app.pending_request_ttl_minutes, 90);
        let environments = s.environments().unwrap();
        let production = environments.parse("production").unwrap();
        let staging = environments.parse("staging").unwrap();
        let start = app.approvals.requirement(Action::CanaryStart, production);
        assert_eq!(
            (start.required, start.roles, start.ruled),
            (2, vec![Role::SecurityTeam, Role::EngLead], true)
        );
        assert!(
            !app.approvals
                .requirement(Action::Rollback, production)
                .ruled
        );
        // No `actions`: every gated action.
        assert!(app.approvals.requirement(Action::LoadShed, staging).ruled);

        for (text, expected) in [
            (
                "[[approvals]]\nenvironments = [\"tier:prod\"]\nrequired = 1\n",
                "tier:prod",
            ),
            (
                "[[approvals]]\nenvironments = [\"qa\"]\nrequired = 1\n",
                "qa",
            ),
            (
                "[[approvals]]\nenvironments = [\"production\"]\nrequired = 0\n",
                "required",
            ),
            (
                "[[approvals]]\nenvironments = []\nrequired = 1\n",
                "environments",
            ),
            ("[[approvals]]\nrequired = 1\n", "environments"),
            (
                "[[approvals]]\nenvironments = [\"production\"]\nactions = [\"deploy.canary.start\"]\nrequired = 1\napprover_roles = [\"developer\"]\n",
                "approver_roles",
            ),
            (
                "[[approvals]]\nenvironments = [\"production\"]\nrequired = 1\nquorum = 2\n",
                "quorum",
            ),
            (
                "[overrides]\npending_ttl_minutes = 0\n",
                "pending_ttl_minutes",
            ),
        ] {
            let f = file(text);
            let err =
                Settings::load(Some(f.path()), env(&[]), &FlagSettings::default()).expect_err(text);
            assert!(format!("{err:#}").contains(expected), "{text}: {err:#}");
        }
    }

    #[test]
    fn probes_and_gates_come_from_the_file_and_are_checked() {
        let f = file(
            r#"
[[probes]]
name = "api"
kind = "http"
url = "http://127.0.0.1:9000/healthz"
expected_status = "200-204"
timeout_ms = 500
interval_ms = 5000
critical = true

[[probes]]
name = "cache"
kind = "tcp"
address = "127.0.0.1:6379"

[[validation_gates]]
name = "integration-tests"
url = "http://ci.internal/releases/{releaseId}/status"
timeout_ms = 2000
"#,
        );
        let s = Settings::load(Some(f.path()), env(&[]), &FlagSettings::default()).unwrap();
        let probes = s.probe_definitions().unwrap();
        assert_eq!(probes.len(), 2);
        assert_eq!(
            probes[0].expected_status,
            Some(StatusRange { min: 200, max: 204 })
        );
        assert_eq!(probes[0].timeout_ms, 500);
        assert!(probes[0].critical);
        assert_eq!(probes[1].target, "127.0.0.1:6379");
        assert_eq!(probes[1].failure_threshold, 3, "default");
        let app = s.app();
        assert_eq!(app.http_gates.len(), 1);
        assert_eq!(app.http_gates[0].method, "GET");

        for (text, expected) in [
            (
                "[[probes]]\nname = \"x\"\nkind = \"http\"\n",
                "probes[0].url",
            ),
            (
                "[[probes]]\nname = \"x\"\nkind = \"tcp\"\naddress = \"nohost\"\n",
                "probes[0].address",
            ),
            (
                "[[probes]]\nname = \"x\"\nkind = \"tcp\"\naddress = \"h:1\"\nbogus = 1\n",
                "unknown field `bogus`",
            ),
            (
                "[[validation_gates]]\nname = \"health\"\nurl = \"http://x/\"\n",
                "built-in gate",
            ),
            (
                "[[validation_gates]]\nname = \"g\"\nurl = \"ftp://x/\"\n",
                "validation_gates[0].url",
            ),
        ] {
            let f = file(text);
            let err =
                Settings::load(Some(f.path()), env(&[]), &FlagSettings::default()).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{text}: {err:#}");
        }
    }

    #[test]
    fn cli_variables_are_not_server_settings() {
        let e = env(&[
            ("DEPLOY_SAFETY_URL", "http://x"),
            ("DEPLOY_SAFETY_TOKEN", "secret"),
        ]);
        assert!(Settings::load(None, e, &FlagSettings::default()).is_ok());
    }

    #[test]
    fn printed_settings_hide_passwords() {
        let flags = FlagSettings {
            database_url: Some("postgres://app:hunter2@db/x".into()),
            ..FlagSettings::default()
        };
        let s = Settings::load(None, env(&[]), &flags).unwrap();
        let shown = s.to_redacted_toml().unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
