//! `serve` and `print-config`: the server with its background work.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use deploy_safety_app::{App, SystemClock};
use deploy_safety_engine::{CanaryRunner, DeliveryWorker, ExpiryWatcher, ProbeRunner};
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
