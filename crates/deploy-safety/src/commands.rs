//! What each command does.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use deploy_safety_api_types::{
    AuditListQuery, CheckRequest, CreateOverrideRequest, CreateProbeRequest,
    EscalateIncidentRequest, IncidentListQuery, OpenIncidentRequest, OverallHealth,
    ResolveIncidentRequest, SetModeRequest, SetThreatLevelRequest, StartValidationRequest,
    ValidationListQuery,
};
use deploy_safety_api_types::{
    CanaryConfigRequest, CanaryMetricsRequest, CreateRollbackRequest, EnvironmentListQuery,
    SetLoadSheddingRequest, StartCanaryRequest,
};
use deploy_safety_app::{App, SystemClock, verify_chain};
use deploy_safety_client::{Client, ClientError};
use deploy_safety_core::{CanaryPhase, ValidationStatus};
use deploy_safety_engine::{CanaryRunner, DeliveryWorker, ExpiryWatcher, ProbeRunner};
use deploy_safety_server::Server;
use deploy_safety_store::{Store, redact_url, sqlite};
use serde::Serialize;
use tracing_subscriber::EnvFilter;

use crate::cli::{
    AuditCommand, CanaryCommand, Command, DatabaseArgs, GateCommand, IncidentCommand,
    LoadshedCommand, ModeCommand, OverrideCommand, ProbeCommand, RemoteArgs, RollbackCommand,
    ServeArgs, ThreatCommand, TokenCommand, ValidateCommand,
};
use crate::output::{self, exit};
use crate::settings::{FlagSettings, LogFormat, Settings};

/// Probe checks that may run at once.
const PROBE_CONCURRENCY: usize = 16;
/// Webhook and executor deliveries that may run at once.
const DELIVERY_CONCURRENCY: usize = 16;

pub async fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Serve(args) => serve(&args).await,
        Command::PrintConfig(args) => {
            print!("{}", settings_for(&args)?.to_redacted_toml()?);
            Ok(exit::OK)
        }
        Command::Token(command) => token(command).await,
        Command::Audit(AuditCommand::Verify {
            config,
            database_url,
            remote,
        }) if config.is_some() || database_url.is_some() => {
            verify_offline(
                &DatabaseArgs {
                    config,
                    database_url,
                },
                remote.json,
            )
            .await
        }
        Command::MigrateData { from, to, json } => migrate_data(from, to, json).await,
        other => remote(other).await,
    }
}

fn settings_for(args: &ServeArgs) -> anyhow::Result<Settings> {
    Settings::load(
        args.database.config.as_deref(),
        |var| std::env::var(var).ok(),
        &FlagSettings {
            listen: args.listen.clone(),
            database_url: args.database.database_url.clone(),
            log_format: args.log_format,
        },
    )
}

fn database_settings(args: &DatabaseArgs) -> anyhow::Result<Settings> {
    settings_for(&ServeArgs {
        database: args.clone(),
        listen: None,
        log_format: None,
    })
}

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.log_filter)
        .with_context(|| format!("invalid log filter `{}`", settings.log_filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match settings.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

async fn serve(args: &ServeArgs) -> anyhow::Result<u8> {
    let settings = settings_for(args)?;
    init_logging(&settings)?;
    let replica = settings.replica();
    let store = open_store(&settings.database_url, Some(replica.clone())).await?;
    tracing::info!(database = %store.describe(), %replica, "database ready");
    let app = App::new(store, Arc::new(SystemClock), settings.app());
    // Bind before creating the bootstrap token, so a start that fails (port taken) does not
    // use up the token's one showing.
    let server = Server::bind(&settings.listen, app.clone(), &settings.http())
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    if let Some(issued) = app.bootstrap_token().await? {
        // Shown once, on stdout, for the person starting a new installation.
        println!(
            "No tokens existed, so one was created for principal \"{}\" (role {}). It is shown only this once:",
            issued.view.name, issued.view.role
        );
        println!("{}", issued.token);
        tracing::warn!(principal = %issued.view.name, "created the bootstrap security-team token");
    }
    app.sync_probes(settings.probe_definitions()?)
        .await
        .context("cannot set up the probes from the settings")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = [
        tokio::spawn(ProbeRunner::new(app.clone(), PROBE_CONCURRENCY).run(stopped.clone())),
        tokio::spawn(CanaryRunner::new(app.clone()).run(stopped.clone())),
        tokio::spawn(DeliveryWorker::new(app.clone(), DELIVERY_CONCURRENCY).run(stopped.clone())),
        tokio::spawn(ExpiryWatcher::new(app.clone()).run(stopped)),
    ];
    let address = server.local_addr()?;
    println!("deploy-safety listening on http://{address}");
    tracing::info!(%address, "listening");
    server
        .run(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await?;
    for task in background {
        if task.await.is_err() {
            tracing::warn!("a background task ended abnormally");
        }
    }
    tracing::info!("stopped");
    Ok(exit::OK)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Who did it, for the audit log of commands run directly on the database.
fn local_operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

/// Opens (creating and migrating if new) the store off the async threads.
async fn open_store(database_url: &str, replica: Option<String>) -> anyhow::Result<Store> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || match replica {
        Some(name) => Store::open_replica(&url, &name),
        None => Store::open(&url),
    })
    .await?
    .with_context(|| format!("cannot open the database {}", redact_url(database_url)))
}

async fn local_app(database: &DatabaseArgs) -> anyhow::Result<App> {
    let settings = database_settings(database)?;
    if let Some(path) = sqlite::path_from_url(&settings.database_url)
        && !path.exists()
    {
        // Token commands create the database if it is new; say so, in case this is the wrong
        // directory (the default URL is relative).
        let shown = std::path::absolute(&path).unwrap_or(path);
        eprintln!(
            "note: no database at {}; creating a new one",
            shown.display()
        );
    }
    let store = open_store(&settings.database_url, None).await?;
    Ok(App::new(store, Arc::new(SystemClock), settings.app()))
}

async fn token(command: TokenCommand) -> anyhow::Result<u8> {
    match command {
        TokenCommand::Create {
            name,
            role,
            database,
        } => {
            let app = local_app(&database).await?;
            let issued = app.create_token(&name, role, &local_operator()).await?;
            println!("{}", issued.token);
        }
        TokenCommand::List { database, json } => {
            let app = local_app(&database).await?;
            let tokens = app.list_tokens().await?;
            if json {
                print_json(&tokens);
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.role.to_string(),
                            t.created_at.to_rfc3339(),
                            t.created_by.clone(),
                            t.revoked_at
                                .map_or_else(|| "active".to_owned(), |at| format!("revoked {at}")),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(
                        &["ID", "NAME", "ROLE", "CREATED", "CREATED BY", "STATUS"],
                        &rows
                    )
                );
            }
        }
        TokenCommand::Revoke { name, id, database } => {
            let app = local_app(&database).await?;
            let revoked = match (name, id) {
                (_, Some(id)) => vec![app.revoke_token(&id, &local_operator()).await?],
                (Some(name), None) => {
                    app.revoke_principal_tokens(&name, &local_operator())
                        .await?
                }
                (None, None) => anyhow::bail!("name a principal or pass --id"),
            };
            for token in revoked {
                println!("Revoked token {} of {}.", token.id, token.name);
            }
        }
    }
    Ok(exit::OK)
}

async fn verify_offline(database: &DatabaseArgs, json: bool) -> anyhow::Result<u8> {
    let settings = database_settings(database)?;
    let url = settings.database_url.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_read_only(&url))
        .await?
        .with_context(|| {
            format!(
                "cannot open the database {}",
                redact_url(&settings.database_url)
            )
        })?;
    let verification = store.read(verify_chain).await?;
    if json {
        print_json(&verification);
    } else {
        print!("{}", output::verification(&verification));
    }
    Ok(if verification.valid {
        exit::OK
    } else {
        exit::CHAIN_BROKEN
    })
}

/// What `migrate-data --json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MigrationReport {
    rows_copied: std::collections::BTreeMap<String, u64>,
    total_rows: u64,
    /// The copy's audit chain, verified on the target.
    audit_chain: deploy_safety_api_types::AuditVerification,
}

async fn migrate_data(from: String, to: String, json: bool) -> anyhow::Result<u8> {
    // A broken chain is evidence for the security team, not something to carry over quietly.
    let source_url = from.clone();
    let source = tokio::task::spawn_blocking(move || Store::open_read_only(&source_url))
        .await?
        .with_context(|| format!("cannot open the source database {}", redact_url(&from)))?;
    let source_chain = source.read(verify_chain).await?;
    drop(source);
    if !source_chain.valid {
        eprint!("{}", output::verification(&source_chain));
        eprintln!("error: the source's audit chain does not verify; nothing was copied");
        return Ok(exit::CHAIN_BROKEN);
    }

    let (copy_from, copy_to) = (from.clone(), to.clone());
    let copied =
        tokio::task::spawn_blocking(move || deploy_safety_store::copy_data(&copy_from, &copy_to))
            .await?;
    let report = match copied {
        Ok(report) => report,
        Err(error @ deploy_safety_store::StoreError::Conflict(_)) => {
            eprintln!("error: nothing was copied: {error}");
            return Ok(exit::REFUSED);
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "cannot copy {} into {}; nothing was copied",
                redact_url(&from),
                redact_url(&to)
            )));
        }
    };

    let target_url = to.clone();
    let target = tokio::task::spawn_blocking(move || Store::open_read_only(&target_url))
        .await?
        .with_context(|| format!("cannot open the copy {}", redact_url(&to)))?;
    let target_chain = target.read(verify_chain).await?;
    drop(target);
    // The copy's chain, recomputed from its entries, must end at the head the source recorded
    // in the copied snapshot, and continue the chain verified on the source before the copy
    // (the same head, unless something was appended in between).
    let same_chain = target_chain.valid
        && target_chain.entries_verified == report.audit_head_seq
        && target_chain.head_hash == report.audit_head_hash
        && (report.audit_head_seq > source_chain.entries_verified
            || report.audit_head_hash == source_chain.head_hash);
    if json {
        print_json(&MigrationReport {
            rows_copied: report.rows.iter().cloned().collect(),
            total_rows: report.total_rows(),
            audit_chain: target_chain.clone(),
        });
    } else {
        println!(
            "Copied {} records from {} to {}:",
            report.total_rows(),
            redact_url(&from),
            redact_url(&to)
        );
        for (table, rows) in &report.rows {
            println!("  {table:<16} {rows}");
        }
        print!("{}", output::verification(&target_chain));
    }
    if same_chain {
        Ok(exit::OK)
    } else {
        eprintln!(
            "error: the copy's audit chain does not match the source's (head {} at entry {})",
            report.audit_head_hash, report.audit_head_seq
        );
        Ok(exit::CHAIN_BROKEN)
    }
}

fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Prints `value` as JSON or with `human`, or reports the error; returns the exit code.
fn show<T: Serialize>(
    result: Result<T, ClientError>,
    remote: &RemoteArgs,
    human: impl FnOnce(&T) -> String,
) -> u8 {
    match result {
        Ok(value) => {
            if remote.json {
                print_json(&value);
            } else {
                print!("{}", human(&value));
            }
            exit::OK
        }
        Err(error) => output::report_error(&error, remote.json),
    }
}

fn client(remote: &RemoteArgs) -> anyhow::Result<Client> {
    Client::new(&remote.server, remote.token.clone()).context("cannot create the HTTP client")
}

/// The remote options of a client command.
fn remote_args(command: &Command) -> Option<&RemoteArgs> {
    match command {
        Command::Status(r) | Command::Whoami(r) | Command::Health(r) => Some(r),
        Command::Mode(ModeCommand::Set { remote, .. })
        | Command::Threat(ThreatCommand::Set { remote, .. })
        | Command::Gate(GateCommand::Check { remote, .. })
        | Command::Audit(AuditCommand::List { remote, .. })
        | Command::Audit(AuditCommand::Verify { remote, .. }) => Some(remote),
        Command::Override(
            OverrideCommand::Create { remote, .. }
            | OverrideCommand::List { remote, .. }
            | OverrideCommand::Show { remote, .. }
            | OverrideCommand::Revoke { remote, .. },
        ) => Some(remote),
        Command::Validate(
            ValidateCommand::Start { remote, .. }
            | ValidateCommand::Run { remote, .. }
            | ValidateCommand::Show { remote, .. }
            | ValidateCommand::List { remote, .. },
        ) => Some(remote),
        Command::Probe(
            ProbeCommand::Add { remote, .. }
            | ProbeCommand::List { remote }
            | ProbeCommand::Show { remote, .. }
            | ProbeCommand::Rm { remote, .. },
        ) => Some(remote),
        Command::Canary(
            CanaryCommand::Start { remote, .. }
            | CanaryCommand::Status { remote, .. }
            | CanaryCommand::Promote { remote, .. }
            | CanaryCommand::Metrics { remote, .. }
            | CanaryCommand::Watch { remote, .. }
            | CanaryCommand::List { remote, .. },
        ) => Some(remote),
        Command::Rollback(
            RollbackCommand::Create { remote, .. }
            | RollbackCommand::Execute { remote, .. }
            | RollbackCommand::Show { remote, .. }
            | RollbackCommand::List { remote, .. },
        ) => Some(remote),
        Command::Releases { remote, .. } => Some(remote),
        Command::Loadshed(
            LoadshedCommand::Set { remote, .. } | LoadshedCommand::Show { remote, .. },
        ) => Some(remote),
        Command::Incident(
            IncidentCommand::Open { remote, .. }
            | IncidentCommand::List { remote, .. }
            | IncidentCommand::Show { remote, .. }
            | IncidentCommand::Escalate { remote, .. }
            | IncidentCommand::Resolve { remote, .. },
        ) => Some(remote),
        Command::Serve(_)
        | Command::PrintConfig(_)
        | Command::Token(_)
        | Command::MigrateData { .. } => None,
    }
}

async fn remote(command: Command) -> anyhow::Result<u8> {
    let needs_token = !matches!(command, Command::Health(_));
    if needs_token && remote_args(&command).is_some_and(|r| r.token.is_none()) {
        eprintln!(
            "error: no token: set DEPLOY_SAFETY_TOKEN or pass --token (create one with `deploy-safety token create`)"
        );
        return Ok(exit::REFUSED);
    }
    Ok(match command {
        Command::Status(remote) => show(
            client(&remote)?.gate_status().await,
            &remote,
            output::gate_status,
        ),
        Command::Whoami(remote) => show(client(&remote)?.whoami().await, &remote, |w| {
            format!("{} ({}), token {}\n", w.name, w.role, w.token_id)
        }),
        Command::Health(remote) => {
            let result = client(&remote)?.health().await;
            let not_healthy =
                matches!(&result, Ok(h) if h.overall_health != OverallHealth::Healthy);
            let code = show(result, &remote, output::health);
            if not_healthy { exit::NO } else { code }
        }
        Command::Mode(ModeCommand::Set {
            mode,
            reason,
            remote,
        }) => show(
            client(&remote)?
                .set_mode(&SetModeRequest { mode, reason })
                .await,
            &remote,
            output::gate_status,
        ),
        Command::Threat(ThreatCommand::Set {
            level,
            reason,
            remote,
        }) => show(
            client(&remote)?
                .set_threat_level(&SetThreatLevelRequest { level, reason })
                .await,
            &remote,
            output::gate_status,
        ),
        Command::Override(command) => override_command(command).await?,
        Command::Validate(command) => validate_command(command).await?,
        Command::Probe(command) => probe_command(command).await?,
        Command::Incident(command) => incident_command(command).await?,
        Command::Canary(command) => canary_command(command).await?,
        Command::Rollback(command) => rollback_command(command).await?,
        Command::Releases {
            environment,
            remote,
        } => show(
            client(&remote)?.releases(environment).await,
            &remote,
            output::releases,
        ),
        Command::Loadshed(LoadshedCommand::Set {
            environment,
            percentage,
            off,
            reason,
            remote,
        }) => show(
            client(&remote)?
                .set_load_shedding(&SetLoadSheddingRequest {
                    environment,
                    enabled: !off,
                    percentage: if off { None } else { percentage },
                    reason,
                })
                .await,
            &remote,
            output::load_shedding,
        ),
        Command::Loadshed(LoadshedCommand::Show {
            environment,
            remote,
        }) => show(
            client(&remote)?.load_shedding(environment).await,
            &remote,
            output::load_shedding,
        ),
        Command::Gate(GateCommand::Check {
            action,
            environment,
            release,
            remote,
        }) => {
            let result = client(&remote)?
                .check(&CheckRequest {
                    action,
                    environment,
                    release_id: release,
                })
                .await;
            let blocked = matches!(&result, Ok(r) if !r.decision.allowed);
            let code = show(result, &remote, |r| output::decision(&r.decision));
            if blocked { exit::NO } else { code }
        }
        Command::Audit(AuditCommand::List {
            action,
            environment,
            principal,
            decision,
            since,
            until,
            limit,
            cursor,
            remote,
        }) => show(
            client(&remote)?
                .audit_page(&AuditListQuery {
                    action,
                    environment,
                    principal,
                    decision,
                    since,
                    until,
                    limit,
                    cursor,
                })
                .await,
            &remote,
            output::audit_page,
        ),
        Command::Audit(AuditCommand::Verify { remote, .. }) => {
            let result = client(&remote)?.audit_verify().await;
            let broken = matches!(&result, Ok(v) if !v.valid);
            let code = show(result, &remote, output::verification);
            if broken { exit::CHAIN_BROKEN } else { code }
        }
        Command::Serve(_)
        | Command::PrintConfig(_)
        | Command::Token(_)
        | Command::MigrateData { .. } => {
            anyhow::bail!("not a client command")
        }
    })
}

async fn override_command(command: OverrideCommand) -> anyhow::Result<u8> {
    Ok(match command {
        OverrideCommand::Create {
            action,
            environment,
            reason,
            ttl_minutes,
            release,
            approver,
            remote,
        } => show(
            client(&remote)?
                .create_override(&CreateOverrideRequest {
                    action,
                    environment,
                    reason,
                    approver,
                    ttl_minutes,
                    release_id: release,
                })
                .await,
            &remote,
            output::override_detail,
        ),
        OverrideCommand::List { all, remote } => show(
            client(&remote)?.list_overrides(all).await,
            &remote,
            |list| output::overrides(&list.overrides),
        ),
        OverrideCommand::Show { id, remote } => show(
            client(&remote)?.get_override(&id).await,
            &remote,
            output::override_detail,
        ),
        OverrideCommand::Revoke { id, remote } => show(
            client(&remote)?.revoke_override(&id).await,
            &remote,
            output::override_detail,
        ),
    })
}

async fn validate_command(command: ValidateCommand) -> anyhow::Result<u8> {
    Ok(match command {
        ValidateCommand::Start {
            release,
            environment,
            remote,
        } => show(
            client(&remote)?
                .start_validation(&StartValidationRequest {
                    release_id: release,
                    environment,
                })
                .await,
            &remote,
            output::validation,
        ),
        ValidateCommand::Run { id, remote } => {
            let result = client(&remote)?.run_validation(&id).await;
            let failed = matches!(&result, Ok(v) if v.status != ValidationStatus::Passed);
            let code = show(result, &remote, output::validation);
            if failed { exit::NO } else { code }
        }
        ValidateCommand::Show { id, remote } => show(
            client(&remote)?.get_validation(&id).await,
            &remote,
            output::validation,
        ),
        ValidateCommand::List {
            release,
            environment,
            limit,
            remote,
        } => show(
            client(&remote)?
                .list_validations(&ValidationListQuery {
                    release_id: release,
                    environment,
                    limit,
                })
                .await,
            &remote,
            |list| output::validations(&list.validations),
        ),
    })
}

async fn probe_command(command: ProbeCommand) -> anyhow::Result<u8> {
    Ok(match command {
        ProbeCommand::Add {
            name,
            kind,
            url,
            method,
            expected_status,
            address,
            timeout_ms,
            interval_ms,
            failure_threshold,
            success_threshold,
            critical,
            remote,
        } => show(
            client(&remote)?
                .create_probe(&CreateProbeRequest {
                    name,
                    kind,
                    url,
                    method,
                    expected_status,
                    address,
                    timeout_ms,
                    interval_ms,
                    failure_threshold,
                    success_threshold,
                    critical: Some(critical),
                })
                .await,
            &remote,
            output::probe_detail,
        ),
        ProbeCommand::List { remote } => {
            show(client(&remote)?.list_probes().await, &remote, |list| {
                output::probes(&list.probes)
            })
        }
        ProbeCommand::Show { id, remote } => show(
            client(&remote)?.get_probe(&id).await,
            &remote,
            output::probe_detail,
        ),
        ProbeCommand::Rm { id, remote } => {
            show(client(&remote)?.delete_probe(&id).await, &remote, |p| {
                format!(
                    "Removed probe {} ({}).\n",
                    p.probe.definition.name, p.probe.id
                )
            })
        }
    })
}

async fn incident_command(command: IncidentCommand) -> anyhow::Result<u8> {
    Ok(match command {
        IncidentCommand::Open {
            title,
            severity,
            category,
            environment,
            remote,
        } => show(
            client(&remote)?
                .open_incident(&OpenIncidentRequest {
                    title,
                    severity,
                    category,
                    environment,
                })
                .await,
            &remote,
            output::incident,
        ),
        IncidentCommand::List {
            status,
            severity,
            environment,
            limit,
            remote,
        } => show(
            client(&remote)?
                .list_incidents(&IncidentListQuery {
                    status,
                    severity,
                    environment,
                    limit,
                })
                .await,
            &remote,
            |list| output::incidents(&list.incidents),
        ),
        IncidentCommand::Show { id, remote } => show(
            client(&remote)?.get_incident(&id).await,
            &remote,
            output::incident,
        ),
        IncidentCommand::Escalate {
            id,
            severity,
            reason,
            remote,
        } => show(
            client(&remote)?
                .escalate_incident(&id, &EscalateIncidentRequest { severity, reason })
                .await,
            &remote,
            output::incident,
        ),
        IncidentCommand::Resolve { id, reason, remote } => show(
            client(&remote)?
                .resolve_incident(&id, &ResolveIncidentRequest { reason })
                .await,
            &remote,
            output::incident,
        ),
    })
}

async fn canary_command(command: CanaryCommand) -> anyhow::Result<u8> {
    Ok(match command {
        CanaryCommand::Start {
            release,
            environment,
            deployment,
            initial_percentage,
            increment_percentage,
            increment_interval,
            max_percentage,
            failure_threshold,
            remote,
        } => {
            let config = CanaryConfigRequest {
                initial_percentage,
                increment_percentage,
                increment_interval,
                max_percentage,
                failure_threshold,
            };
            show(
                client(&remote)?
                    .start_canary(&StartCanaryRequest {
                        release_id: release,
                        environment,
                        deployment_id: deployment,
                        config: Some(config),
                    })
                    .await,
                &remote,
                output::canary,
            )
        }
        CanaryCommand::Status {
            environment,
            remote,
        } => show(
            client(&remote)?.canary_status(environment).await,
            &remote,
            output::canary,
        ),
        CanaryCommand::Promote {
            environment,
            remote,
        } => show(
            client(&remote)?.promote_canary(environment).await,
            &remote,
            output::canary,
        ),
        CanaryCommand::Metrics {
            environment,
            error_rate,
            latency_p99,
            baseline_latency_p99,
            cpu,
            memory,
            remote,
        } => show(
            client(&remote)?
                .push_canary_metrics(
                    environment,
                    &CanaryMetricsRequest {
                        error_rate_percent: error_rate,
                        latency_p99_ms: latency_p99,
                        baseline_latency_p99_ms: baseline_latency_p99,
                        cpu_percent: cpu,
                        memory_percent: memory,
                    },
                )
                .await,
            &remote,
            output::canary,
        ),
        CanaryCommand::Watch {
            environment,
            remote,
        } => watch_canary(environment, &remote).await?,
        CanaryCommand::List {
            environment,
            limit,
            remote,
        } => show(
            client(&remote)?
                .list_canaries(&EnvironmentListQuery { environment, limit })
                .await,
            &remote,
            |list| output::canaries(&list.canaries),
        ),
    })
}

/// Prints the canary, then one line per change as events arrive, until it finishes.
async fn watch_canary(
    environment: deploy_safety_core::Environment,
    remote: &RemoteArgs,
) -> anyhow::Result<u8> {
    let client = client(remote)?;
    // Subscribe first, then read the state: no change can fall between the two.
    let mut events = match client.events(None, Some(environment)).await {
        Ok(events) => events,
        Err(error) => return Ok(output::report_error(&error, remote.json)),
    };
    let mut current = match client.canary_status(environment).await {
        Ok(view) => view,
        Err(error) => return Ok(output::report_error(&error, remote.json)),
    };
    let id = current.canary.id.clone();
    if remote.json {
        print_json(&current);
    } else {
        print!("{}", output::canary(&current));
    }
    loop {
        if !current.canary.phase.is_active() {
            return Ok(match current.canary.phase {
                CanaryPhase::RolledBack => exit::NO,
                _ => exit::OK,
            });
        }
        let Some(event) = events.next().await else {
            anyhow::bail!("the server ended the event stream");
        };
        let event = event?;
        if event.data["canaryId"].as_str() != Some(id.as_str()) {
            continue;
        }
        if remote.json {
            print_json(&event);
        }
        current = match client.canary_status(environment).await {
            Ok(view) => view,
            Err(error) => return Ok(output::report_error(&error, remote.json)),
        };
        if !remote.json {
            println!("{}", output::canary_line(&event, &current));
        }
    }
}

async fn rollback_command(command: RollbackCommand) -> anyhow::Result<u8> {
    Ok(match command {
        RollbackCommand::Create {
            environment,
            from_version,
            to_version,
            reason,
            remote,
        } => show(
            client(&remote)?
                .create_rollback(&CreateRollbackRequest {
                    environment,
                    from_version,
                    to_version,
                    reason,
                })
                .await,
            &remote,
            output::rollback,
        ),
        RollbackCommand::Execute { id, remote } => show(
            client(&remote)?.execute_rollback(&id).await,
            &remote,
            output::rollback,
        ),
        RollbackCommand::Show { id, remote } => show(
            client(&remote)?.get_rollback(&id).await,
            &remote,
            output::rollback,
        ),
        RollbackCommand::List {
            environment,
            limit,
            remote,
        } => show(
            client(&remote)?
                .list_rollbacks(&EnvironmentListQuery { environment, limit })
                .await,
            &remote,
            |list| output::rollbacks(&list.rollbacks),
        ),
    })
}
