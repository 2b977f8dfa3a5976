//! The command line: what each command takes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use deploy_safety_core::{
    Action, AuditDecision, Environment, IncidentCategory, IncidentStatus, ProbeKind, RequestStatus,
    Role, SecurityMode, Severity, SoakStatus, ThreatLevel,
};

use crate::settings::LogFormat;

/// deploy-safety: the deploy gate. `serve` runs the server; the other commands talk to one (or,
/// for `token`, `audit verify --database-url` and `migrate-data`, to databases directly).
#[derive(Debug, Parser)]
#[command(name = "deploy-safety", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print the resolved settings (defaults, file, environment, flags), passwords redacted.
    PrintConfig(ServeArgs),
    /// Manage bearer tokens, directly on the database (works whether the server runs or not).
    #[command(subcommand)]
    Token(TokenCommand),
    /// List and revoke sessions (single sign-on and dashboard sign-ins), directly on the database.
    #[command(subcommand)]
    Session(SessionCommand),
    /// The gate's mode, threat level and active overrides.
    Status(RemoteArgs),
    /// The principal behind your token.
    Whoami(RemoteArgs),
    /// The service's health and its probes. Exit 0 when healthy, 3 otherwise.
    Health(RemoteArgs),
    /// Change the security mode (security team).
    #[command(subcommand)]
    Mode(ModeCommand),
    /// Change the threat level (security team).
    #[command(subcommand)]
    Threat(ThreatCommand),
    /// Create, list, show and revoke overrides; request them and vote on requests where two
    /// people must approve.
    #[command(subcommand)]
    Override(OverrideCommand),
    /// Ask the gate. Exit code 0 when allowed, 3 when blocked.
    #[command(subcommand)]
    Gate(GateCommand),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Release validations: start, run (exit 3 when a gate fails), show, list.
    #[command(subcommand)]
    Validate(ValidateCommand),
    /// Health probes: add, list, show, remove.
    #[command(subcommand)]
    Probe(ProbeCommand),
    /// Incidents: open, list, show, escalate, resolve.
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Canary deployments: start, status, promote, metrics, watch, list.
    #[command(subcommand)]
    Canary(CanaryCommand),
    /// Rollbacks: create, execute (exit 3 when blocked), show, list.
    #[command(subcommand)]
    Rollback(RollbackCommand),
    /// Soaks, the runbook's step 6: start, status, watch (exit 0 when passed, 3 otherwise),
    /// list, abort, metrics.
    #[command(subcommand)]
    Soak(SoakCommand),
    /// What ran in an environment, newest first.
    Releases {
        #[arg(value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Freezes: times when chosen deployments stop (create, list, show, end).
    #[command(subcommand)]
    Freeze(FreezeCommand),
    /// The environments the server knows, with their tiers.
    Environments {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Load shedding: set (gated, exit 3 when blocked), show.
    #[command(subcommand)]
    Loadshed(LoadshedCommand),
    /// Copy every record from one database into a new one (e.g. the SQLite file into
    /// PostgreSQL), then verify the copy's audit chain. Stop the servers first. Exit 4 when the
    /// target already holds records, 5 when an audit chain does not verify.
    MigrateData {
        /// The database to copy from: sqlite://PATH or postgres://...
        #[arg(long)]
        from: String,
        /// The database to copy into: created and migrated if needed; must hold no records.
        #[arg(long)]
        to: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CanaryCommand {
    /// Start a canary (gated deploy.canary.start; exit 3 when blocked, or when production
    /// needs the release validated, or soaked, in staging first).
    Start {
        #[arg(long)]
        release: String,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        deployment: String,
        #[arg(long)]
        initial_percentage: Option<u8>,
        #[arg(long)]
        increment_percentage: Option<u8>,
        /// Milliseconds between evaluations (default 300000).
        #[arg(long)]
        increment_interval: Option<u64>,
        #[arg(long)]
        max_percentage: Option<u8>,
        /// Unhealthy evaluations in a row before an automatic rollback (default 1).
        #[arg(long)]
        failure_threshold: Option<u32>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The environment's canary: percentage, phase, status, metrics, steps.
    Status {
        #[arg(value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Take the active canary to its maximum now (gated deploy.canary.promote).
    Promote {
        #[arg(value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Push the active canary's current metrics.
    Metrics {
        #[arg(value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        error_rate: Option<f64>,
        #[arg(long)]
        latency_p99: Option<f64>,
        #[arg(long)]
        baseline_latency_p99: Option<f64>,
        #[arg(long)]
        cpu: Option<f64>,
        #[arg(long)]
        memory: Option<f64>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Follow the canary live until it finishes: exit 0 completed or promoted, 3 rolled back.
    Watch {
        #[arg(value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Canaries, newest first.
    List {
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Option<Environment>,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum FreezeCommand {
    /// Create a freeze (security-team, eng-lead): a window from --start to --end, or a
    /// recurring one, e.g. --schedule "0 16 * * FRI" --duration 8h --time-zone Europe/Berlin.
    Create {
        /// A short name, e.g. holiday-2026.
        #[arg(long)]
        name: String,
        /// Why nobody may deploy; shown in every decision it makes.
        #[arg(long)]
        reason: String,
        /// Repeat for several; absent: every environment.
        #[arg(long = "environment", value_parser = parse::<Environment>)]
        environments: Vec<Environment>,
        /// Repeat for several; absent: every request (with or without a service).
        #[arg(long = "service")]
        services: Vec<String>,
        /// Repeat for several; default deploy.canary.start and deploy.canary.promote.
        #[arg(long = "action", value_parser = parse::<Action>)]
        actions: Vec<Action>,
        /// RFC 3339 (default now).
        #[arg(long)]
        start: Option<String>,
        /// RFC 3339 (default: until ended by hand).
        #[arg(long)]
        end: Option<String>,
        /// A 5-field cron expression for the start of each window.
        #[arg(long, requires_all = ["duration", "time_zone"])]
        schedule: Option<String>,
        /// How long each scheduled window lasts, e.g. 8h or 90m.
        #[arg(long, value_parser = parse_duration, requires = "schedule")]
        duration: Option<std::time::Duration>,
        /// The IANA time zone the schedule is read in, e.g. Europe/Berlin.
        #[arg(long, requires = "schedule")]
        time_zone: Option<String>,
        /// Nothing lifts it but its end (by default a covering override does).
        #[arg(long)]
        hard: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Freezes not yet over (--all: ended ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// End a freeze now (security-team, eng-lead).
    End {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RollbackCommand {
    /// Create a pending rollback.
    Create {
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[arg(long = "from")]
        from_version: String,
        #[arg(long = "to")]
        to_version: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Execute a pending rollback (gated deploy.rollback; exit 3 when blocked).
    Execute {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    List {
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Option<Environment>,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum LoadshedCommand {
    /// Shed a share of traffic (--percentage 1-100), or stop (--off).
    Set {
        #[arg(value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[arg(long, required_unless_present = "off", conflicts_with = "off")]
        percentage: Option<u8>,
        #[arg(long)]
        off: bool,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    Show {
        #[arg(value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ValidateCommand {
    /// Start a validation of a release in an environment.
    Start {
        #[arg(long)]
        release: String,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Run every gate now. Exit 0 when all passed, 3 when one failed.
    Run {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// A validation's latest gates and every run.
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Validations, newest first.
    List {
        #[arg(long)]
        release: Option<String>,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Option<Environment>,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// Add an http probe (--url) or a tcp probe (--address).
    Add {
        name: String,
        #[arg(long, value_parser = parse::<ProbeKind>)]
        kind: ProbeKind,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        method: Option<String>,
        /// e.g. 200-299 (default) or 204.
        #[arg(long)]
        expected_status: Option<String>,
        /// host:port, for tcp.
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        timeout_ms: Option<u32>,
        #[arg(long)]
        interval_ms: Option<u32>,
        #[arg(long)]
        failure_threshold: Option<u32>,
        #[arg(long)]
        success_threshold: Option<u32>,
        /// A failing critical probe makes the service unhealthy.
        #[arg(long)]
        critical: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Every probe and its state.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// One probe (id or name) with its recent history.
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Remove a probe added through the API (id or name).
    Rm {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Open an incident (a critical security incident puts the gate into lockdown).
    Open {
        #[arg(long)]
        title: String,
        #[arg(long, value_parser = parse::<Severity>)]
        severity: Severity,
        #[arg(long, value_parser = parse::<IncidentCategory>)]
        category: IncidentCategory,
        /// Absent: every environment.
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Option<Environment>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Incidents, newest first.
    List {
        #[arg(long, value_parser = parse::<IncidentStatus>)]
        status: Option<IncidentStatus>,
        #[arg(long, value_parser = parse::<Severity>)]
        severity: Option<Severity>,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Option<Environment>,
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// One incident and its history.
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Raise an incident's severity.
    Escalate {
        id: String,
        #[arg(long, value_parser = parse::<Severity>)]
        severity: Severity,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Resolve an incident.
    Resolve {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// TOML settings file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL, e.g. sqlite://deploy-safety.db [env: DEPLOY_SAFETY_DATABASE_URL]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on, e.g. 127.0.0.1:8080 [env: DEPLOY_SAFETY_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Log format [env: DEPLOY_SAFETY_LOG_FORMAT]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// How to reach the server.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "DEPLOY_SAFETY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Bearer token.
    #[arg(long, env = "DEPLOY_SAFETY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token (for a new principal, or another token of an existing one with the same
    /// role); prints only the token on stdout.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse::<Role>)]
        role: Role,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke every token of a principal (NAME), or one token (--id).
    Revoke {
        /// The principal whose tokens to revoke.
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        name: Option<String>,
        /// One token's id (`ds_<id>.<secret>`; the id alone, or with `ds_`).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List sessions, newest first (never their secrets).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke every session of a principal (NAME), or one session (--id).
    Revoke {
        /// The principal whose sessions to revoke.
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        name: Option<String>,
        /// One session's id, as `session list` shows it.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModeCommand {
    /// Set the mode: monitor, enforce or lockdown (lockdown needs --reason).
    Set {
        #[arg(value_parser = parse::<SecurityMode>)]
        mode: SecurityMode,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ThreatCommand {
    /// Set the threat level: none, low, medium, high, critical (critical enters lockdown).
    Set {
        #[arg(value_parser = parse::<ThreatLevel>)]
        level: ThreatLevel,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// Create an override; you are its approver.
    Create {
        #[arg(long, value_parser = parse::<Action>)]
        action: Action,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        /// Business justification with a ticket reference.
        #[arg(long)]
        reason: String,
        /// Minutes until it expires (default 60).
        #[arg(long)]
        ttl_minutes: Option<i64>,
        /// Bind the override to one release.
        #[arg(long)]
        release: Option<String>,
        /// Must be your own principal name (filled from your token when absent).
        #[arg(long)]
        approver: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List active overrides (--all: expired and revoked too).
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show one override.
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Revoke an override (security team, or its creator).
    Revoke {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Ask for an override that other people approve (any person, developers included). Where
    /// an `[[approvals]]` rule applies, this is the only way to get one.
    Request {
        #[arg(long, value_parser = parse::<Action>)]
        action: Action,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        /// Bind the override to one release.
        #[arg(long)]
        release: Option<String>,
        /// Business justification with a ticket reference.
        #[arg(long)]
        reason: String,
        /// The override's lifetime once approved, in minutes (default 60).
        #[arg(long, visible_alias = "ttl", value_name = "MINUTES")]
        ttl_minutes: Option<i64>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Approve someone else's override request; the approval that reaches the number required
    /// creates the override at once.
    Approve {
        id: String,
        /// Why (optional).
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Deny an override request: one deny ends it, and no override is made.
    Deny {
        id: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Override requests, newest first (--status pending: those waiting for votes); with an
    /// ID, that request and its votes.
    Requests {
        id: Option<String>,
        #[arg(long, value_parser = parse::<RequestStatus>, conflicts_with = "id")]
        status: Option<RequestStatus>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// What would the gate decide now? Exit 0 when allowed, 3 when blocked.
    Check {
        #[arg(long, value_parser = parse::<Action>)]
        action: Action,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        release: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SoakCommand {
    /// Start watching a release (any role). Defaults are the runbook's: 15 minutes, evaluated
    /// every minute, error rate below 0.1 %, p99 latency below the baseline + 10 %, and no new
    /// incident.
    Start {
        #[arg(long)]
        release: String,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Environment,
        /// One service of the environment (absent: the environment as a whole).
        #[arg(long)]
        service: Option<String>,
        /// Replaces {deploymentId} in the environment's Prometheus queries (default: the
        /// release).
        #[arg(long)]
        deployment: Option<String>,
        /// How long: 90s, 15m, 1h (default 15m).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        /// How often it is evaluated (default 1m).
        #[arg(long, value_parser = parse_duration)]
        interval: Option<std::time::Duration>,
        /// Error-rate bound in percent (default 0.1, or `[soak] max_error_rate_percent`).
        #[arg(long)]
        max_error_rate: Option<f64>,
        /// Latency bound above the baseline in percent (default 10).
        #[arg(long)]
        max_latency_increase: Option<f64>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// A soak and every evaluation so far.
    Status {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Follow a soak, one line per evaluation, until it ends: exit 0 when it passed, 3 when
    /// it failed, was inconclusive or was aborted.
    Watch {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Soaks, newest first.
    List {
        #[arg(long)]
        release: Option<String>,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Option<Environment>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, value_parser = parse::<SoakStatus>)]
        status: Option<SoakStatus>,
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// End a running soak (it is then `aborted`).
    Abort {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Push the release's current metrics to a running soak.
    Metrics {
        id: String,
        /// Error rate, in percent.
        #[arg(long)]
        error_rate: Option<f64>,
        /// p99 latency, in milliseconds.
        #[arg(long)]
        latency_p99: Option<f64>,
        /// The baseline's p99 latency, in milliseconds.
        #[arg(long)]
        baseline_latency_p99: Option<f64>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Audit entries, newest first.
    List {
        #[arg(long)]
        action: Option<String>,
        #[arg(long, value_parser = parse::<Environment>)]
        environment: Option<Environment>,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long, value_parser = parse::<AuditDecision>)]
        decision: Option<AuditDecision>,
        /// RFC 3339 time, inclusive.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time, exclusive.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// The `next cursor` printed under the previous page.
        #[arg(long)]
        cursor: Option<u64>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Verify the hash chain: through the server, or offline on the database with
    /// --database-url/--config, also against signed checkpoints kept elsewhere. Exit 5 when
    /// anything fails.
    Verify {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Verify this database directly, read-only, without a server.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// Signed checkpoints kept outside the database (JSON lines, as `[audit]
        /// checkpoint_file` writes them): every signature is checked, and the database must
        /// still hold each checkpointed entry with the signed hash. Offline only.
        #[arg(long, value_name = "FILE", requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// The public key the checkpoints are signed with (PEM, from `audit public-key`).
        /// Repeat it for checkpoints signed by several keys.
        #[arg(long = "public-key", value_name = "PEMFILE")]
        public_key: Vec<PathBuf>,
        /// Also fail when the newest checkpoint is older than this: 30s, 5m, 2h, 1d.
        #[arg(long, value_name = "DURATION", requires = "checkpoints", value_parser = parse_duration)]
        max_age: Option<std::time::Duration>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The public key checkpoints are signed with, as PEM: from the server, or from the
    /// signing key file with --key-file. Keep a copy out of the server's reach.
    PublicKey {
        /// Read the public key from this private key file instead of asking the server.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The newest signed checkpoint, as one JSON line (append it to a file you keep).
    Checkpoint {
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// `30s`, `5m`, `2h`, `1d`, or several together (`1h30m`).
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let invalid = || format!("`{text}` is not a duration like 30s, 5m, 2h or 1d");
    let mut seconds: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let n: u64 = number.parse().map_err(|_| invalid())?;
        number.clear();
        seconds = n
            .checked_mul(unit)
            .and_then(|s| seconds.checked_add(s))
            .ok_or_else(invalid)?;
    }
    if !number.is_empty() || seconds == 0 {
        return Err(invalid());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

/// Parses any of the core's enums with its own error message listing the choices.
fn parse<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations_parse() {
        for (text, seconds) in [
            ("30s", 30),
            ("5m", 300),
            ("2h", 7_200),
            ("1d", 86_400),
            ("1h30m", 5_400),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(std::time::Duration::from_secs(seconds)),
                "{text}"
            );
        }
        for bad in ["", "5", "m", "5x", "0s", "-5m", "5 m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn enums_parse_with_their_api_spelling() {
        let cli = Cli::try_parse_from([
            "deploy-safety",
            "gate",
            "check",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Gate(GateCommand::Check {
                action: Action::CanaryStart,
                environment: Environment::PRODUCTION,
                ..
            })
        ));
        let err = Cli::try_parse_from([
            "deploy-safety",
            "gate",
            "check",
            "--action",
            "deploy",
            "--environment",
            "production",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("expected one of"), "{err}");
    }

    fn parse_override(args: &[&str]) -> Result<OverrideCommand, clap::Error> {
        let mut all = vec!["deploy-safety", "override"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|cli| match cli.command {
            Command::Override(command) => command,
            other => panic!("not an override command: {other:?}"),
        })
    }

    #[test]
    fn override_request_takes_the_override_fields() {
        let command = parse_override(&[
            "request",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
            "--service",
            "payments",
            "--release",
            "v1.2.3",
            "--reason",
            "CHG-1234",
            "--ttl",
            "30",
            "--json",
        ])
        .unwrap();
        let OverrideCommand::Request {
            action,
            environment,
            service,
            release,
            reason,
            ttl_minutes,
            remote,
        } = command
        else {
            panic!("not a request: {command:?}");
        };
        assert_eq!(action, Action::CanaryStart);
        assert_eq!(environment, Environment::PRODUCTION);
        assert_eq!(service.as_deref(), Some("payments"));
        assert_eq!(release.as_deref(), Some("v1.2.3"));
        assert_eq!(reason, "CHG-1234");
        assert_eq!(ttl_minutes, Some(30));
        assert!(remote.json);
        // `--ttl-minutes`, as `override create` spells it, is the same flag.
        let command = parse_override(&[
            "request",
            "--action",
            "deploy.rollback",
            "--environment",
            "production",
            "--reason",
            "INC-1",
            "--ttl-minutes",
            "15",
        ])
        .unwrap();
        assert!(matches!(
            command,
            OverrideCommand::Request {
                action: Action::Rollback,
                ttl_minutes: Some(15),
                service: None,
                release: None,
                ..
            }
        ));
        // A reason is required, as for `override create`.
        let err = parse_override(&[
            "request",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn votes_take_an_id_and_a_deny_needs_a_comment() {
        let command = parse_override(&["approve", "oreq_1"]).unwrap();
        assert!(matches!(
            command,
            OverrideCommand::Approve { ref id, comment: None, .. } if id == "oreq_1"
        ));
        let command = parse_override(&["approve", "oreq_1", "--comment", "ok"]).unwrap();
        assert!(matches!(
            command,
            OverrideCommand::Approve { comment: Some(ref c), .. } if c == "ok"
        ));
        let command = parse_override(&["deny", "oreq_1", "--comment", "no CAB"]).unwrap();
        assert!(matches!(
            command,
            OverrideCommand::Deny { ref id, ref comment, .. } if id == "oreq_1" && comment == "no CAB"
        ));
        let err = parse_override(&["deny", "oreq_1"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(err.to_string().contains("--comment"), "{err}");
        let err = parse_override(&["approve"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn override_requests_lists_by_status_or_shows_one() {
        let command = parse_override(&["requests"]).unwrap();
        assert!(matches!(
            command,
            OverrideCommand::Requests {
                id: None,
                status: None,
                ..
            }
        ));
        for (text, status) in [
            ("pending", RequestStatus::Pending),
            ("approved", RequestStatus::Approved),
            ("denied", RequestStatus::Denied),
            ("expired", RequestStatus::Expired),
        ] {
            let command = parse_override(&["requests", "--status", text]).unwrap();
            assert!(
                matches!(command, OverrideCommand::Requests { status: Some(s), .. } if s == status),
                "{text}"
            );
        }
        let command = parse_override(&["requests", "oreq_1", "--json"]).unwrap();
        assert!(matches!(
            command,
            OverrideCommand::Requests { id: Some(ref id), ref remote, .. } if id == "oreq_1" && remote.json
        ));
        let err = parse_override(&["requests", "--status", "open"]).unwrap_err();
        assert!(err.to_string().contains("expected one of"), "{err}");
        // One request, or a list: not both.
        let err = parse_override(&["requests", "oreq_1", "--status", "pending"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
