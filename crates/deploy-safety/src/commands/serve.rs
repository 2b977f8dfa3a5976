//! `serve` and `print-config`: the server with its background work.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use deploy_safety_app::{App, SystemClock};
use deploy_safety_engine::{
    CanaryRunner, CheckpointWriter, DeliveryWorker, ExpiryWatcher, FreezeWatcher, GithubWatcher,
    ProbeRunner, SoakRunner,
};
use deploy_safety_server::Server;
use deploy_safety_store::{Store, redact_url};
use tracing_subscriber::EnvFilter;

use crate::cli::{DatabaseArgs, ServeArgs};
use crate::output::exit;
use crate::settings::{FlagSettings, LogFormat, Settings};

/// Probe checks that may run at once.
const PROBE_CONCURRENCY: usize = 16;
/// Webhook and executor deliveries that may run at once.
const DELIVERY_CONCURRENCY: usize = 16;

pub(super) fn settings_for(args: &ServeArgs) -> anyhow::Result<Settings> {
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

pub(super) fn database_settings(args: &DatabaseArgs) -> anyhow::Result<Settings> {
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

pub(super) async fn serve(args: &ServeArgs) -> anyhow::Result<u8> {
    let settings = settings_for(args)?;
    init_logging(&settings)?;
    let (checkpoints, key_created) = settings.checkpoints()?;
    let key_id = checkpoints.key.key_id().to_owned();
    if key_created {
        tracing::warn!(
            path = %settings.audit.signing_key_file, %key_id,
            "created a new audit signing key: back it up, and give every replica the same file"
        );
    }
    let replica = settings.replica();
    let store = open_store(&settings.database_url, Some(replica.clone())).await?;
    tracing::info!(database = %store.describe(), %replica, %key_id, "database ready");
    let mut app_settings = settings.app();
    app_settings.checkpoints = Some(checkpoints);
    let app = App::new(store, Arc::new(SystemClock), app_settings);
    if let Ok(latest) = app.latest_checkpoint().await
        && latest.key_id != key_id
    {
        tracing::warn!(
            previous = %latest.key_id, %key_id,
            "checkpoints so far were signed by another key: if this is not a planned key change, every replica needs the same [audit] signing_key_file"
        );
    }
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
    // The issuers' keys: fetched before the first pipeline asks, then refreshed on a schedule
    // (failures are logged; cached keys keep verifying, and a token with an unknown key tries
    // again).
    let warming = app.clone();
    tokio::spawn(async move {
        loop {
            warming.warm_oidc_keys().await;
            tokio::time::sleep(deploy_safety_app::KEY_REFRESH_INTERVAL).await;
        }
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = [
        tokio::spawn(ProbeRunner::new(app.clone(), PROBE_CONCURRENCY).run(stopped.clone())),
        tokio::spawn(CanaryRunner::new(app.clone()).run(stopped.clone())),
        tokio::spawn(SoakRunner::new(app.clone()).run(stopped.clone())),
        tokio::spawn(DeliveryWorker::new(app.clone(), DELIVERY_CONCURRENCY).run(stopped.clone())),
        tokio::spawn(ExpiryWatcher::new(app.clone()).run(stopped.clone())),
        tokio::spawn(FreezeWatcher::new(app.clone()).run(stopped.clone())),
        tokio::spawn(GithubWatcher::new(app.clone()).run(stopped.clone())),
        tokio::spawn(CheckpointWriter::new(app.clone()).run(stopped)),
    ];
    let address = server.local_addr()?;
    let shutdown = shutdown_signal()?;
    println!("deploy-safety listening on http://{address}");
    tracing::info!(%address, "listening");
    let stopping = app.clone();
    server
        .run(async move {
            shutdown.await;
            stopping.begin_shutdown();
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

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a signal that arrives right after the address is printed stops
/// the server gracefully instead of killing it.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}

/// Opens (creating and migrating if new) the store off the async threads.
pub(super) async fn open_store(
    database_url: &str,
    replica: Option<String>,
) -> anyhow::Result<Store> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || match replica {
        Some(name) => Store::open_replica(&url, &name),
        None => Store::open(&url),
    })
    .await?
    .with_context(|| format!("cannot open the database {}", redact_url(database_url)))
}
