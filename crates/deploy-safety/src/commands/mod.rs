//! What each command does, one module per domain.

mod audit;
mod canaries;
mod freezes;
mod gate;
mod incidents;
mod local;
mod probes;
mod rollbacks;
mod serve;
mod soaks;
mod validations;

use anyhow::Context;
use deploy_safety_client::{Client, ClientError};
use serde::Serialize;

use crate::cli::{Command, RemoteArgs};
use crate::output::{self, exit};

/// A client command was given no token: said once, as a refusal (exit 4).
#[derive(Debug, thiserror::Error)]
#[error(
    "no token: set DEPLOY_SAFETY_TOKEN or pass --token (create one with `deploy-safety token create`)"
)]
struct NoToken;

pub async fn run(command: Command) -> anyhow::Result<u8> {
    let result = match command {
        Command::Serve(args) => serve::serve(&args).await,
        Command::PrintConfig(args) => {
            print!("{}", serve::settings_for(&args)?.to_redacted_toml()?);
            Ok(exit::OK)
        }
        Command::Token(command) => local::token(command).await,
        Command::Session(command) => local::session(command).await,
        Command::MigrateData { from, to, json } => local::migrate_data(from, to, json).await,
        Command::Audit(command) => audit::audit_command(command).await,
        Command::Override(_)
        | Command::Status(_)
        | Command::Whoami(_)
        | Command::Health(_)
        | Command::Mode(_)
        | Command::Threat(_)
        | Command::Gate(_)
        | Command::Loadshed(_) => gate::gate_command(command).await,
        Command::Validate(command) => validations::validate_command(command).await,
        Command::Probe(command) => probes::probe_command(command).await,
        Command::Incident(command) => incidents::incident_command(command).await,
        Command::Canary(command) => canaries::canary_command(command).await,
        Command::Rollback(command) => rollbacks::rollback_command(command).await,
        Command::Soak(command) => soaks::soak_command(command).await,
        Command::Freeze(command) => freezes::freeze_command(command).await,
        Command::Environments { remote } => Ok(show(
            client(&remote)?.environments().await,
            &remote,
            crate::output::environments,
        )),
        Command::Releases { .. } => rollbacks::releases_command(command).await,
    };
    match result {
        Err(error) if error.downcast_ref::<NoToken>().is_some() => {
            eprintln!("error: {error}");
            Ok(exit::REFUSED)
        }
        other => other,
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

/// A client for `remote`, which must carry a token.
fn client(remote: &RemoteArgs) -> anyhow::Result<Client> {
    if remote.token.is_none() {
        return Err(NoToken.into());
    }
    client_without_token(remote)
}

/// A client for `remote`, with its token if it has one (`health` answers without).
fn client_without_token(remote: &RemoteArgs) -> anyhow::Result<Client> {
    Client::new(&remote.server, remote.token.clone()).context("cannot create the HTTP client")
}
