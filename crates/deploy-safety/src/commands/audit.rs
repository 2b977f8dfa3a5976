//! The audit log: list and verify, through the server or offline on the database.

use anyhow::Context;
use deploy_safety_api_types::AuditListQuery;
use deploy_safety_app::verify_chain;
use deploy_safety_store::{Store, redact_url};

use super::serve::database_settings;
use super::{client, print_json, show};
use crate::cli::{AuditCommand, DatabaseArgs};
use crate::output::{self, exit};

pub(super) async fn audit_command(command: AuditCommand) -> anyhow::Result<u8> {
    Ok(match command {
        AuditCommand::Verify {
            config,
            database_url,
            remote,
        } if config.is_some() || database_url.is_some() => {
            verify_offline(
                &DatabaseArgs {
                    config,
                    database_url,
                },
                remote.json,
            )
            .await?
        }
        AuditCommand::List {
            action,
            environment,
            principal,
            decision,
            since,
            until,
            limit,
            cursor,
            remote,
        } => show(
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
        AuditCommand::Verify { remote, .. } => {
            let result = client(&remote)?.audit_verify().await;
            let broken = matches!(&result, Ok(v) if !v.valid);
            let code = show(result, &remote, output::verification);
            if broken { exit::CHAIN_BROKEN } else { code }
        }
    })
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
